import MoEFormat

/// The prune stage of a profile: decides which routed experts each MoE layer keeps. The
/// converter then stores only those experts, the matching router rows and correction-bias
/// entries, and the kept-id map in the bundle manifest.
public protocol PruneStage: Sendable {
    /// For every MoE layer, the original ids of the experts to keep (at least `moe_k` of them,
    /// distinct, ascending). Layers left out keep all their experts.
    func keptExperts(checkpoint: Checkpoint, settings: PruneSettings) throws -> [Int: [Int]]
    /// Creation parameters to record in the bundle's provenance (e.g. the statistics file hash).
    var provenance: [String: String] { get }
}

extension PruneStage {
    public var provenance: [String: String] { [:] }
}

enum PruneMap {
    /// Checks a prune stage's answer against the model and returns it in manifest form.
    static func validated(_ kept: [Int: [Int]], config: ModelConfig) throws -> [String: [Int]] {
        var map: [String: [Int]] = [:]
        for (layer, ids) in kept.sorted(by: { $0.key < $1.key }) {
            guard layer >= 0, layer < config.numHiddenLayers, config.isMoELayer(layer) else {
                throw ProfileError("prune stage: layer \(layer) is not an MoE layer")
            }
            guard ids == ids.sorted(), Set(ids).count == ids.count, ids.allSatisfy({ $0 >= 0 && $0 < config.moeNumExperts }) else {
                throw ProfileError("prune stage: layer \(layer) kept ids must be distinct, ascending and below \(config.moeNumExperts)")
            }
            guard ids.count >= config.moeK else {
                throw ProfileError("prune stage: layer \(layer) keeps \(ids.count) experts, fewer than moe_k = \(config.moeK)")
            }
            map[String(layer)] = ids
        }
        return map
    }
}
