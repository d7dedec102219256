import MoEFormat
import MoERuntime

/// A weight source with some routed experts removed: their tensors cannot be read and
/// `keptExperts` lists the rest. The router (every original expert's row and correction bias)
/// stays whole: the runtime masks pruned experts out of the top-k choice (see `MoEBlock`).
/// This is what a pruned bundle holds, so a checkpoint wrapped in it runs exactly as its pruned
/// bundle would in f32, and the converter reads the pruned model through it.
public struct PrunedWeights: WeightSource {
    public let base: any WeightSource
    public let plan: PruningPlan
    public var config: ModelConfig { base.config }

    public init(base: any WeightSource, plan: PruningPlan) throws {
        let c = base.config
        guard plan.numExperts == c.moeNumExperts, Set(plan.kept.keys) == Set(c.moeLayers) else {
            throw CalibrationError("the pruning plan does not match the model's experts or MoE layers")
        }
        for (layer, ids) in plan.kept {
            let available = Set(base.keptExperts(layer: layer))
            guard ids.count >= c.moeK, ids == ids.sorted(), Set(ids).count == ids.count, ids.allSatisfy(available.contains) else {
                throw CalibrationError("the pruning plan for layer \(layer) is invalid (needs at least moe_k = \(c.moeK) distinct available experts)")
            }
        }
        self.base = base
        self.plan = plan
    }

    public func keptExperts(layer: Int) -> [Int] { plan.kept[layer] ?? base.keptExperts(layer: layer) }

    public func matrix(_ name: String, rows: Int, cols: Int) throws -> any MatrixOperator {
        if let (layer, expert) = Self.expertTensor(name), !(plan.kept[layer]?.contains(expert) ?? true) {
            throw FormatError("tensor \(name) belongs to pruned expert \(expert) of layer \(layer)")
        }
        return try base.matrix(name, rows: rows, cols: cols)
    }

    public func vector(_ name: String, count: Int) throws -> [Float] {
        try base.vector(name, count: count)
    }

    public func contains(_ name: String) -> Bool {
        if let (layer, expert) = Self.expertTensor(name), !(plan.kept[layer]?.contains(expert) ?? true) { return false }
        return base.contains(name)
    }

    /// `model.layers.L.mlp.experts.E.*`
    static func expertTensor(_ name: String) -> (layer: Int, expert: Int)? {
        let parts = name.split(separator: ".")
        guard parts.count >= 6, parts[0] == "model", parts[1] == "layers", parts[3] == "mlp", parts[4] == "experts",
              let layer = Int(parts[2]), let expert = Int(parts[5]) else { return nil }
        return (layer, expert)
    }
}
