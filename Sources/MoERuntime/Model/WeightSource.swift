import MoEFormat

/// Where a model's weights come from: a checkpoint (upcast to f32) or a bundle (stored format).
/// The model asks for tensors by their hub name; the source decides the representation.
public protocol WeightSource: Sendable {
    var config: ModelConfig { get }
    /// A 2-D weight as an operator, shape [rows, cols].
    func matrix(_ name: String, rows: Int, cols: Int) throws -> any MatrixOperator
    /// A 1-D tensor (norm weight, bias, correction bias) as f32.
    func vector(_ name: String, count: Int) throws -> [Float]
    /// Original expert ids kept in layer `layer`, in storage order (all when nothing was pruned).
    func keptExperts(layer: Int) -> [Int]
    /// Whether the source holds tensor `name` (optional tensors may be absent).
    func contains(_ name: String) -> Bool
}

extension WeightSource {
    /// The router's correction bias of MoE layer `layer`; zero when the checkpoint has none
    /// (some exports drop it, with `moe_use_aux_free` false, and route on the softmax alone).
    public func correctionBias(layer: Int) throws -> [Float] {
        let name = "model.layers.\(layer).mlp.moe_statics.e_score_correction_bias"
        guard contains(name) else { return [Float](repeating: 0, count: config.moeNumExperts) }
        return try vector(name, count: config.moeNumExperts)
    }
}

/// Reads a Hugging Face checkpoint and upcasts every weight to f32: the reference path.
public struct CheckpointWeights: WeightSource {
    public let checkpoint: Checkpoint
    public var config: ModelConfig { checkpoint.config }

    public init(checkpoint: Checkpoint) throws {
        self.checkpoint = checkpoint
        let layout = ModelLayout(config: checkpoint.config)
        try layout.validate(names: checkpoint.tensorNames) { try checkpoint.info($0).shape }
    }

    public func matrix(_ name: String, rows: Int, cols: Int) throws -> any MatrixOperator {
        DenseMatrix(rows: rows, cols: cols, values: try checkpoint.floats(name, shape: [rows, cols]))
    }

    public func vector(_ name: String, count: Int) throws -> [Float] {
        let values = try checkpoint.floats(name)
        guard values.count == count else {
            throw FormatError("tensor \(name) has \(values.count) values, expected \(count)")
        }
        return values
    }

    public func keptExperts(layer: Int) -> [Int] { Array(0..<config.moeNumExperts) }

    public func contains(_ name: String) -> Bool { checkpoint.contains(name) }
}
