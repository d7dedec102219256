import Foundation

/// `--report plan.html`: the solver's KL-against-size frontier (the predicted KL of the best
/// plan at sizes from the smallest reachable to every weight at its largest format) with the
/// chosen plan marked, and a heatmap of the choice of every routed expert by layer.
public enum PlanReport {
    static let colors = ["int8": "#1a9850", "q4g32": "#91cf60", "q4g64": "#d9ef8b", "q4g128": "#fee08b", "nl4g32": "#66bd63",
                         "q3g32": "#fdae61", "q3g64": "#fd8d3c", "q2g32": "#f46d43", "q2g64": "#e34a33", "pruned": "#d73027"]

    public static func html(planner: SizePlanner, plan: SizePlan) throws -> String {
        let units = planner.solverUnits()
        let low = planner.smallestBytes()
        let high = units.reduce(planner.fixedBytes) { $0 + ($1.options.map(\.bytes).max() ?? 0) }
        var points: [(Int, Double)] = []
        for i in 0...40 {
            let budget = low + (high - low) * i / 40
            if let s = try? BudgetSolver.solve(units, fixedBytes: planner.fixedBytes, budget: budget, pruneLimit: planner.pruneLimits()) {
                points.append((s.bytes, s.price))
            }
        }
        let width = 640.0, height = 320.0, pad = 48.0
        let maxKL = max(points.map(\.1).max() ?? 1, plan.predictedKL, 1e-12)
        func x(_ b: Int) -> Double { pad + (width - 2 * pad) * Double(b - low) / Double(max(high - low, 1)) }
        func y(_ kl: Double) -> Double { height - pad - (height - 2 * pad) * kl / maxKL }
        let path = points.map { String(format: "%.1f,%.1f", x($0.0), y($0.1)) }.joined(separator: " ")
        let bpw = { (b: Int) in String(format: "%.2f", Double(b * 8) / Double(max(plan.parameters, 1))) }
        let svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="11">
        <polyline fill="none" stroke="#4575b4" stroke-width="2" points="\(path)"/>
        <circle cx="\(String(format: "%.1f", x(plan.weightBytes)))" cy="\(String(format: "%.1f", y(plan.predictedKL)))" r="5" fill="#d73027"/>
        <line x1="\(pad)" y1="\(height - pad)" x2="\(width - pad)" y2="\(height - pad)" stroke="#000"/>
        <line x1="\(pad)" y1="\(pad)" x2="\(pad)" y2="\(height - pad)" stroke="#000"/>
        <text x="\(pad)" y="\(height - pad + 16)">\(bpw(low)) bits/weight</text>
        <text x="\(width - pad)" y="\(height - pad + 16)" text-anchor="end">\(bpw(high)) bits/weight</text>
        <text x="\(pad - 4)" y="\(pad)" text-anchor="end">\(String(format: "%.3g", maxKL))</text>
        <text x="\(pad - 4)" y="\(height - pad)" text-anchor="end">0</text>
        <text x="\(width / 2)" y="\(height - 8)" text-anchor="middle">stored bytes (predicted KL of the best plan at each size)</text>
        </svg>
        """
        // Heatmap: one row per MoE layer, one cell per routed expert.
        let experts = plan.units.filter { $0.expert != nil }
        let layers = Array(Set(experts.compactMap(\.layer))).sorted()
        let perLayer = (experts.compactMap(\.expert).max() ?? -1) + 1
        let cell = max(6, min(24, 600 / max(perLayer, 1)))
        var heat = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(60 + cell * perLayer)\" height=\"\(20 + cell * layers.count)\" font-family=\"sans-serif\" font-size=\"10\">"
        for (row, layer) in layers.enumerated() {
            heat += "<text x=\"0\" y=\"\(20 + row * cell + cell - 2)\">layer \(layer)</text>"
            for u in experts where u.layer == layer {
                heat += "<rect x=\"\(60 + u.expert! * cell)\" y=\"\(20 + row * cell)\" width=\"\(cell - 1)\" height=\"\(cell - 1)\" fill=\"\(colors[u.choice] ?? "#999999")\"><title>\(u.name): \(u.choice), \(u.bytes) bytes, price \(String(format: "%.3g", u.price))</title></rect>"
            }
        }
        heat += "</svg>"
        let legend = Set(plan.units.map(\.choice)).sorted().map { "<span style=\"background:\(colors[$0] ?? "#999999");padding:0 6px\">\($0)</span>" }.joined(separator: " ")
        let rows = plan.mix.map { "<tr><td>\($0.tensorClass.rawValue)</td><td>\($0.choice)</td><td>\($0.units)</td><td>\($0.bytes)</td></tr>" }.joined()
        return """
        <!doctype html><html><head><meta charset="utf-8"><title>moepack size plan</title>
        <style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}</style></head><body>
        <h1>Size plan: \(plan.target)</h1>
        <p>\(plan.weightBytes) of \(plan.targetBytes) bytes (\(String(format: "%.3f", plan.bitsPerWeight)) bits/weight over \(plan.parameters) parameters);
        predicted KL divergence \(String(format: "%.5f", plan.predictedKL)) nats/token (prices measured on \(plan.priceTokens) tokens).</p>
        <h2>Frontier</h2>\(svg)
        <h2>Routed experts</h2><p>\(legend)</p>\(heat)
        <h2>Mix</h2><table><tr><th>class</th><th>choice</th><th>units</th><th>bytes</th></tr>\(rows)</table>
        </body></html>
        """
    }
}
