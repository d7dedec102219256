import Foundation

/// A picture of calibration statistics: a heatmap of each expert's share of top-k selections
/// per MoE layer, the experts a pruning plan removes crossed out, and the coverage kept.
public enum CalibrationReport {
    /// A standalone SVG image.
    public static func svg(stats: CalibrationStats, plan: PruningPlan, criterion: PruningCriterion, ratio: Double) -> String {
        let e = stats.model.numExperts
        let cell = e > 64 ? 8 : (e > 32 ? 12 : 22)
        let left = 70, top = 78, right = 200
        let width = max(left + e * cell + right, 800)
        let height = top + stats.layers.count * cell + 60
        let selections = ExpertPruner.coverage(stats: stats, plan: plan, criterion: .frequency)
        let weights = ExpertPruner.coverage(stats: stats, plan: plan, criterion: .weight)
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" font-family="sans-serif" font-size="11">
        <rect width="100%" height="100%" fill="white"/>
        <text x="10" y="18" font-size="14" font-weight="bold">Expert usage per MoE layer (share of top-\(stats.model.moeK) selections)</text>
        <text x="10" y="36">\(escape(stats.data.source)): \(stats.data.tokens) tokens · model \(stats.model.identity.prefix(12)) · pruning \(criterion.rawValue) at ratio \(format(ratio)): \(plan.removedCount) of \(plan.kept.count * e) experts removed (crossed)</text>
        <text x="10" y="54">Kept experts carry \(percent(selections.overall)) of selections and \(percent(weights.overall)) of routing weight. Darker = busier; uniform share is \(percent(1 / Double(e))).</text>

        """
        for expert in stride(from: 0, to: e, by: e > 32 ? 8 : (e > 16 ? 4 : 1)) {
            s += "<text x=\"\(left + expert * cell + cell / 2)\" y=\"\(top - 6)\" text-anchor=\"middle\">\(expert)</text>\n"
        }
        s += "<text x=\"\(left + e * cell + 10)\" y=\"\(top - 6)\">kept: selections / weight</text>\n"
        for (row, layer) in stats.layers.enumerated() {
            let y = top + row * cell
            let total = Double(layer.count.reduce(0, +))
            let kept = Set(plan.kept[layer.layer] ?? [])
            s += "<text x=\"\(left - 6)\" y=\"\(y + cell / 2 + 4)\" text-anchor=\"end\">layer \(layer.layer)</text>\n"
            for expert in 0..<e {
                let share = total > 0 ? Double(layer.count[expert]) / total : 0
                // Scale so that twice the uniform share is the darkest colour.
                let level = min(1, share * Double(e) / 2)
                let x = left + expert * cell
                s += "<rect x=\"\(x)\" y=\"\(y)\" width=\"\(cell)\" height=\"\(cell)\" fill=\"\(color(level))\" stroke=\"#ddd\"><title>layer \(layer.layer) expert \(expert): \(layer.count[expert]) selections (\(percent(share))), weight \(format(layer.weightSum[expert])), REAP \(format(layer.outputNormMean[expert]))\(kept.contains(expert) ? "" : ", pruned")</title></rect>\n"
                if !kept.contains(expert) {
                    s += "<path d=\"M\(x + 2) \(y + 2)L\(x + cell - 2) \(y + cell - 2)M\(x + cell - 2) \(y + 2)L\(x + 2) \(y + cell - 2)\" stroke=\"#d62728\" stroke-width=\"2\"/>\n"
                }
            }
            s += "<text x=\"\(left + e * cell + 10)\" y=\"\(y + cell / 2 + 4)\">\(percent(selections.perLayer[layer.layer] ?? 1)) / \(percent(weights.perLayer[layer.layer] ?? 1))</text>\n"
        }
        let legendY = top + stats.layers.count * cell + 20
        for i in 0...10 {
            s += "<rect x=\"\(left + i * 16)\" y=\"\(legendY)\" width=\"16\" height=\"12\" fill=\"\(color(Double(i) / 10))\"/>\n"
        }
        s += "<text x=\"\(left)\" y=\"\(legendY + 26)\">0</text><text x=\"\(left + 176)\" y=\"\(legendY + 26)\" text-anchor=\"end\">≥ 2× uniform</text>\n"
        s += "</svg>\n"
        return s
    }

    /// An HTML page with the heatmap and a per-layer table.
    public static func html(stats: CalibrationStats, plan: PruningPlan, criterion: PruningCriterion, ratio: Double) -> String {
        let selections = ExpertPruner.coverage(stats: stats, plan: plan, criterion: .frequency)
        let weights = ExpertPruner.coverage(stats: stats, plan: plan, criterion: .weight)
        var rows = ""
        for layer in stats.layers {
            let unused = layer.count.filter { $0 == 0 }.count
            rows += "<tr><td>\(layer.layer)</td><td>\(format(layer.routerEntropy))</td><td>\(format(layer.selectionEntropy))</td>"
                + "<td>\(unused)</td><td>\(plan.kept[layer.layer]?.count ?? 0)</td>"
                + "<td>\(percent(selections.perLayer[layer.layer] ?? 1))</td><td>\(percent(weights.perLayer[layer.layer] ?? 1))</td></tr>\n"
        }
        return """
        <!DOCTYPE html>
        <html><head><meta charset="utf-8"><title>moepack calibration report</title>
        <style>body{font-family:sans-serif;margin:20px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style>
        </head><body>
        <h1>Calibration report</h1>
        <p>\(escape(stats.data.source)): \(stats.data.tokens) tokens in \(stats.data.windows) windows of up to \(stats.data.context).
        Pruning with criterion <b>\(criterion.rawValue)</b> at ratio \(format(ratio)) per layer keeps \(plan.keptCount) of \(plan.kept.count * stats.model.numExperts) routed experts,
        carrying \(percent(selections.overall)) of top-\(stats.model.moeK) selections and \(percent(weights.overall)) of routing weight.
        Log of the expert count (uniform routing entropy) is \(format(log(Double(stats.model.numExperts)))) nats.</p>
        \(svg(stats: stats, plan: plan, criterion: criterion, ratio: ratio))
        <table><tr><th>layer</th><th>router entropy (nats)</th><th>selection entropy (nats)</th><th>never chosen</th><th>kept</th><th>selections kept</th><th>weight kept</th></tr>
        \(rows)</table>
        </body></html>

        """
    }

    /// White to dark blue.
    static func color(_ level: Double) -> String {
        let t = max(0, min(1, level))
        let r = Int((1 - t) * 255 + t * 8), g = Int((1 - t) * 255 + t * 48), b = Int((1 - t) * 255 + t * 107)
        return String(format: "#%02x%02x%02x", r, g, b)
    }

    static func percent(_ x: Double) -> String { String(format: "%.1f%%", x * 100) }
    static func format(_ x: Double) -> String { String(format: "%.4g", x) }
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
