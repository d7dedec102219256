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
    /// (layer, expert) of every routed-expert tensor name, from the family's layout.
    private let expertTensors: [String: (layer: Int, expert: Int)]

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
        var experts: [String: (layer: Int, expert: Int)] = [:]
        for spec in ModelLayout(config: c).tensors where spec.tensorClass == .routedExperts {
            if let layer = spec.layer, let expert = spec.expert { experts[spec.name] = (layer, expert) }
        }
        expertTensors = experts
    }

    public func keptExperts(layer: Int) -> [Int] { plan.kept[layer] ?? base.keptExperts(layer: layer) }

    public func matrix(_ name: String, rows: Int, cols: Int) throws -> any MatrixOperator {
        if let (layer, expert) = expertTensors[name], !(plan.kept[layer]?.contains(expert) ?? true) {
            throw FormatError("tensor \(name) belongs to pruned expert \(expert) of layer \(layer)")
        }
        return try base.matrix(name, rows: rows, cols: cols)
    }

    public func vector(_ name: String, count: Int) throws -> [Float] {
        try base.vector(name, count: count)
    }

    public func contains(_ name: String) -> Bool {
        if let (layer, expert) = expertTensors[name], !(plan.kept[layer]?.contains(expert) ?? true) { return false }
        return base.contains(name)
    }
}
