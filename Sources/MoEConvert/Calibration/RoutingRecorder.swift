import Foundation
import MoERuntime

/// Accumulates routing statistics, and the inputs' statistics (`InputRecorder`), while a
/// model runs (a `RoutingObserver`).
/// Storage indices are mapped to original expert ids, so a partly pruned model still reports
/// by original id.
public final class RoutingRecorder: RoutingObserver {
    struct Layer {
        var count: [Int]
        var weightSum: [Double]
        var normSum: [Double]
        var probabilitySum: [Double]
        var entropySum: Double = 0
        var tokens = 0

        init(experts: Int) {
            count = Array(repeating: 0, count: experts)
            weightSum = Array(repeating: 0, count: experts)
            normSum = Array(repeating: 0, count: experts)
            probabilitySum = Array(repeating: 0, count: experts)
        }
    }

    let numExperts: Int
    let kept: [Int: [Int]]
    private(set) var layers: [Int: Layer] = [:]
    let inputs: InputRecorder

    /// `kept[layer]` maps storage index → original expert id.
    public init(numExperts: Int, kept: [Int: [Int]]) {
        self.numExperts = numExperts
        self.kept = kept
        inputs = InputRecorder(numExperts: numExperts, kept: kept)
        for layer in kept.keys { layers[layer] = Layer(experts: numExperts) }
    }

    public func observeInputs(layer: Int, site: InputSite, rows: UnsafePointer<Float>, count: Int, width: Int) {
        inputs.add(layer: layer, site: site, rows: rows, count: count, width: width)
    }

    public func observe(layer: Int, decisions: [RoutingDecision], weightedOutputNorms: [[Float]]) {
        guard var stats = layers[layer], let ids = kept[layer] else { return }
        for (t, decision) in decisions.enumerated() {
            for (slot, expert) in decision.experts.enumerated() {
                let id = ids[expert]
                stats.count[id] += 1
                stats.weightSum[id] += Double(decision.weights[slot])
                stats.normSum[id] += Double(weightedOutputNorms[t][slot])
            }
            var entropy = 0.0
            for (expert, p) in decision.probabilities.enumerated() {
                stats.probabilitySum[ids[expert]] += Double(p)
                if p > 0 { entropy -= Double(p) * log(Double(p)) }
            }
            stats.entropySum += entropy
            stats.tokens += 1
        }
        layers[layer] = stats
    }

    /// The statistics so far, one entry per layer in ascending order.
    func layerStats() -> [CalibrationStats.LayerStats] {
        layers.keys.sorted().map { index in
            let s = layers[index]!
            let total = Double(s.count.reduce(0, +))
            let selectionEntropy = total > 0
                ? -s.count.reduce(0.0) { acc, c in c > 0 ? acc + Double(c) / total * log(Double(c) / total) : acc }
                : 0
            func mean(_ sums: [Double]) -> [Double] { zip(sums, s.count).map { $1 > 0 ? $0 / Double($1) : 0 } }
            return CalibrationStats.LayerStats(
                layer: index, count: s.count, weightSum: s.weightSum, weightMean: mean(s.weightSum),
                outputNormMean: mean(s.normSum), probabilitySum: s.probabilitySum,
                routerEntropy: s.tokens > 0 ? s.entropySum / Double(s.tokens) : 0,
                selectionEntropy: selectionEntropy)
        }
    }
}
