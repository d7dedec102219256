import Foundation
import MoEFormat

/// What ranks an expert's usefulness when pruning.
public enum PruningCriterion: String, Sendable, Codable, CaseIterable {
    /// How often the expert was in a token's top-k.
    case frequency
    /// The routing weight it received, summed over tokens.
    case weight
    /// REAP: mean norm of its router-weighted output over the tokens routed to it.
    case reap

    /// Chosen by measurement on the tiny model (docs/pruning.md).
    public static let `default`: PruningCriterion = .reap

    func scores(_ layer: CalibrationStats.LayerStats) -> [Double] {
        switch self {
        case .frequency: layer.count.map(Double.init)
        case .weight: layer.weightSum
        case .reap: layer.outputNormMean
        }
    }
}

/// How many experts to remove.
public enum PruningBudget: Sendable, Equatable {
    /// Remove round(ratio × E) experts from every MoE layer.
    case perLayer(ratio: Double)
    /// Remove round(ratio × E × layers) experts in all, the lowest-scoring ones across layers
    /// (scores as a share of their layer's total), keeping at least moe_k in every layer.
    case global(ratio: Double)

    var ratio: Double {
        switch self {
        case .perLayer(let r), .global(let r): r
        }
    }
}

/// The experts kept in each MoE layer, by original id, ascending.
public struct PruningPlan: Codable, Sendable, Equatable {
    public var numExperts: Int
    public var kept: [Int: [Int]]

    public init(numExperts: Int, kept: [Int: [Int]]) {
        self.numExperts = numExperts
        self.kept = kept
    }

    /// A plan that keeps everything (no pruning).
    public static func full(_ config: ModelConfig) -> PruningPlan {
        PruningPlan(numExperts: config.moeNumExperts,
                    kept: Dictionary(uniqueKeysWithValues: config.moeLayers.map { ($0, Array(0..<config.moeNumExperts)) }))
    }

    public var keptCount: Int { kept.values.reduce(0) { $0 + $1.count } }
    public var removedCount: Int { kept.count * numExperts - keptCount }
}

/// Chooses which routed experts to keep from calibration statistics. Shared experts are not
/// routed and are never candidates.
public enum ExpertPruner {
    public static func plan(stats: CalibrationStats, criterion: PruningCriterion, budget: PruningBudget) throws -> PruningPlan {
        let e = stats.model.numExperts, k = stats.model.moeK
        let ratio = budget.ratio
        guard ratio.isFinite, ratio >= 0, ratio < 1 else {
            throw CalibrationError("prune ratio \(ratio) must be at least 0 and below 1")
        }
        var removed: [Int: Set<Int>] = [:]
        switch budget {
        case .perLayer:
            let n = Int((ratio * Double(e)).rounded())
            guard e - n >= k else {
                throw CalibrationError("prune ratio \(ratio) would leave \(e - n) of \(e) experts per layer, fewer than moe_k = \(k)")
            }
            for layer in stats.layers {
                removed[layer.layer] = Set(ascending(criterion.scores(layer)).prefix(n))
            }
        case .global:
            let layers = stats.layers.count
            let n = Int((ratio * Double(e * layers)).rounded())
            guard n <= (e - k) * layers else {
                throw CalibrationError("prune ratio \(ratio) would remove \(n) experts, but keeping moe_k = \(k) in each of \(layers) layers allows at most \((e - k) * layers)")
            }
            // Scores as a share of the layer total, so layers of different scale compare.
            var candidates: [(share: Double, layer: Int, expert: Int)] = []
            for layer in stats.layers {
                let scores = criterion.scores(layer)
                let total = scores.reduce(0, +)
                for (expert, s) in scores.enumerated() {
                    candidates.append((total > 0 ? s / total : 0, layer.layer, expert))
                }
            }
            candidates.sort { ($0.share, $1.expert, $0.layer) < ($1.share, $0.expert, $1.layer) }
            var left = n
            for c in candidates where left > 0 {
                if removed[c.layer, default: []].count < e - k {
                    removed[c.layer, default: []].insert(c.expert)
                    left -= 1
                }
            }
        }
        let kept = Dictionary(uniqueKeysWithValues: stats.layers.map { layer in
            (layer.layer, (0..<e).filter { !(removed[layer.layer]?.contains($0) ?? false) })
        })
        return PruningPlan(numExperts: e, kept: kept)
    }

    /// Expert ids from least to most useful; ties remove the higher id first.
    static func ascending(_ scores: [Double]) -> [Int] {
        scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] < scores[$1] : $0 > $1 }
    }

    /// Share of the criterion's total that the kept experts carry, per layer and overall
    /// (1 when nothing is pruned).
    public static func coverage(stats: CalibrationStats, plan: PruningPlan, criterion: PruningCriterion) -> (perLayer: [Int: Double], overall: Double) {
        var perLayer: [Int: Double] = [:]
        var keptSum = 0.0, allSum = 0.0
        for layer in stats.layers {
            let scores = criterion.scores(layer)
            let total = scores.reduce(0, +)
            let kept = (plan.kept[layer.layer] ?? []).reduce(0.0) { $0 + scores[$1] }
            perLayer[layer.layer] = total > 0 ? kept / total : 1
            keptSum += kept
            allSum += total
        }
        return (perLayer, allSum > 0 ? keptSum / allSum : 1)
    }
}
