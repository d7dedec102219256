import MoEFormat

/// Where a model's weights come from: a checkpoint or a bundle, each in its stored format.
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
    /// The router's correction bias of MoE layer `layer`; zero when the family's router has
    /// none or the checkpoint leaves it out (some ERNIE exports drop it, with
    /// `moe_use_aux_free` false, and route on the softmax alone).
    public func correctionBias(layer: Int) throws -> [Float] {
        let name = config.names.routerBias(layer)
        guard config.router.correctionBias, contains(name) else { return [Float](repeating: 0, count: config.moeNumExperts) }
        return try vector(name, count: config.moeNumExperts)
    }
}

/// Reads a Hugging Face checkpoint: the reference path. Matrices stay in their stored dtype
/// (f32, bf16 or f16) in the shards' memory maps and are multiplied there (`StoredMatrix`);
/// bf16 and f16 widen to f32 exactly, so the products are the f32 products of the stored
/// values. Only 1-D tensors are copied, as f32.
public struct CheckpointWeights: WeightSource {
    public let checkpoint: Checkpoint
    public var config: ModelConfig { checkpoint.config }

    public init(checkpoint: Checkpoint) throws {
        self.checkpoint = checkpoint
        let layout = ModelLayout(config: checkpoint.config)
        try layout.validate(names: checkpoint.tensorNames) { try checkpoint.info($0).shape }
    }

    public func matrix(_ name: String, rows: Int, cols: Int) throws -> any MatrixOperator {
        let info = try checkpoint.info(name)
        guard info.shape == [rows, cols] else {
            throw FormatError("tensor \(name) has shape \(info.shape), expected \([rows, cols])")
        }
        let format = WeightFormat(info.dtype)
        let raw = try checkpoint.rawBytes(name)
        if let base = raw.baseAddress, Int(bitPattern: base) % info.dtype.byteSize != 0 {
            // safetensors does not promise aligned tensors: such a one gets an aligned copy of its bytes.
            let copy = OwnedBytes(count: raw.count)
            copy.pointer.copyMemory(from: base, byteCount: raw.count)
            return try StoredMatrix(format: format, rows: rows, cols: cols, buffer: copy.buffer, owner: copy, fileMapped: false)
        }
        return try StoredMatrix(format: format, rows: rows, cols: cols, buffer: raw, owner: checkpoint, fileMapped: true)
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
