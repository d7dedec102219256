import MoEFormat
import MoERuntime

/// A weight source with some routed experts removed: the router rows and correction-bias
/// entries of pruned experts are dropped and their expert tensors cannot be read. This is
/// what a pruned bundle holds, so a checkpoint wrapped in it runs exactly as its pruned bundle
/// would (in f32), and the converter reads the pruned model through it.
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
        if let (layer, tensor) = Self.routerTensor(name), tensor == "gate.weight" {
            let (baseCount, positions) = try storagePositions(layer)
            guard rows == positions.count else { throw FormatError("tensor \(name): \(rows) rows requested, \(positions.count) experts kept") }
            let full = try base.matrix(name, rows: baseCount, cols: cols)
            var values = [Float](repeating: 0, count: rows * cols)
            values.withUnsafeMutableBufferPointer { out in
                for (i, p) in positions.enumerated() { full.copyRow(p, into: out.baseAddress! + i * cols) }
            }
            return DenseMatrix(rows: rows, cols: cols, values: values)
        }
        if let (layer, expert) = Self.expertTensor(name), !(plan.kept[layer]?.contains(expert) ?? true) {
            throw FormatError("tensor \(name) belongs to pruned expert \(expert) of layer \(layer)")
        }
        return try base.matrix(name, rows: rows, cols: cols)
    }

    public func vector(_ name: String, count: Int) throws -> [Float] {
        if let (layer, tensor) = Self.routerTensor(name), tensor == "moe_statics.e_score_correction_bias" {
            let (baseCount, positions) = try storagePositions(layer)
            guard count == positions.count else { throw FormatError("tensor \(name): \(count) values requested, \(positions.count) experts kept") }
            let full = try base.vector(name, count: baseCount)
            return positions.map { full[$0] }
        }
        return try base.vector(name, count: count)
    }

    /// Where the kept experts sit among the base source's stored experts.
    private func storagePositions(_ layer: Int) throws -> (baseCount: Int, positions: [Int]) {
        let stored = base.keptExperts(layer: layer)
        let index = Dictionary(uniqueKeysWithValues: stored.enumerated().map { ($1, $0) })
        let positions = try keptExperts(layer: layer).map { id in
            guard let p = index[id] else { throw FormatError("expert \(id) of layer \(layer) is not in the source") }
            return p
        }
        return (stored.count, positions)
    }

    /// `model.layers.L.mlp.<tensor>` for the router tensors.
    static func routerTensor(_ name: String) -> (Int, String)? {
        let parts = name.split(separator: ".", maxSplits: 4).map(String.init)
        guard parts.count == 5, parts[0] == "model", parts[1] == "layers", parts[3] == "mlp", let layer = Int(parts[2]),
              parts[4] == "gate.weight" || parts[4] == "moe_statics.e_score_correction_bias" else { return nil }
        return (layer, parts[4])
    }

    /// `model.layers.L.mlp.experts.E.*`
    static func expertTensor(_ name: String) -> (layer: Int, expert: Int)? {
        let parts = name.split(separator: ".")
        guard parts.count >= 6, parts[0] == "model", parts[1] == "layers", parts[3] == "mlp", parts[4] == "experts",
              let layer = Int(parts[2]), let expert = Int(parts[5]) else { return nil }
        return (layer, expert)
    }
}
