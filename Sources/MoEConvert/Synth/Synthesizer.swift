import Foundation
import MoEFormat
import MoETokenizer

/// Writes a random-initialised checkpoint in the hub layout (config.json, sharded safetensors,
/// optional tokenizer files), one tensor at a time, so any ERNIE 4.5 shape can be tried
/// without downloading weights. Matrices are N(0, std²); norm weights are 1, biases 0.
public struct Synthesizer {
    public var configJSON: [String: Any]
    public var dtype: DType = .bf16
    public var seed: UInt64 = 0
    public var standardDeviation: Float = 0.02
    /// Shards are cut when the next tensor would take a file past this size.
    public var shardBytes = 2 << 30
    /// Files copied next to the weights (tokenizer.model, tokenizer_config.json, ...). A
    /// tokenizer.model with fewer pieces than the vocabulary is padded to it (see
    /// SentencePieceTokenizer.padding).
    public var extraFiles: [URL] = []

    public init(configJSON: [String: Any]) { self.configJSON = configJSON }

    /// Writes into `output`, which must not exist yet. The folder appears only when complete.
    public func write(to output: URL, progress: ((Int, Int) -> Void)? = nil) throws {
        let config = try ModelConfig(json: configJSON)
        let fm = FileManager.default
        guard !fm.fileExists(atPath: output.path) else { throw FormatError("\(output.path) already exists") }
        let staging = output.deletingLastPathComponent()
            .appendingPathComponent(".\(output.lastPathComponent).partial-\(ProcessInfo.processInfo.processIdentifier)")
        try? fm.removeItem(at: staging)
        try fm.createDirectory(at: staging, withIntermediateDirectories: true)
        do {
            try writeContents(config: config, into: staging, progress: progress)
            try fm.moveItem(at: staging, to: output)
        } catch {
            try? fm.removeItem(at: staging)
            throw error
        }
    }

    private func writeContents(config: ModelConfig, into dir: URL, progress: ((Int, Int) -> Void)?) throws {
        var json = configJSON
        json["torch_dtype"] = dtype == .f32 ? "float32" : dtype == .bf16 ? "bfloat16" : "float16"
        try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
            .write(to: dir.appendingPathComponent("config.json"))
        for file in extraFiles {
            let target = dir.appendingPathComponent(file.lastPathComponent)
            if file.lastPathComponent == "tokenizer.model" {
                // A tokenizer smaller than the vocabulary gets pieces for the missing ids, so that
                // generated text is not mostly empty.
                try SentencePieceTokenizer.padding(Data(contentsOf: file), toPieces: config.vocabSize).write(to: target)
            } else {
                try FileManager.default.copyItem(at: file, to: target)
            }
        }

        let specs = ModelLayout(config: config).tensors
        // Group tensors into shards in layout order.
        var shards: [[TensorSpec]] = [[]]
        var shardSize = 0
        for spec in specs {
            let bytes = spec.elementCount * dtype.byteSize
            if shardSize > 0, shardSize + bytes > shardBytes {
                shards.append([])
                shardSize = 0
            }
            shards[shards.count - 1].append(spec)
            shardSize += bytes
        }
        let names = shards.count == 1
            ? ["model.safetensors"]
            : (1...shards.count).map { String(format: "model-%05d-of-%05d.safetensors", $0, shards.count) }
        var generator = NormalGenerator(seed: seed)
        var weightMap: [String: String] = [:]
        var done = 0
        for (shard, name) in zip(shards, names) {
            let writer = try SafeTensorsWriter(url: dir.appendingPathComponent(name),
                                               entries: shard.map { .init(name: $0.name, dtype: dtype, shape: $0.shape) },
                                               metadata: ["format": "pt"])
            for spec in shard {
                let values = initialValues(spec, &generator)
                try encoded(values) { try writer.write(spec.name, bytes: $0) }
                weightMap[spec.name] = name
                done += 1
                progress?(done, specs.count)
            }
            try writer.close()
        }
        if shards.count > 1 {
            let total = specs.reduce(0) { $0 + $1.elementCount * dtype.byteSize }
            let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
            try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys])
                .write(to: dir.appendingPathComponent("model.safetensors.index.json"))
        }
    }

    private func initialValues(_ spec: TensorSpec, _ generator: inout NormalGenerator) -> [Float] {
        let n = spec.elementCount
        if spec.tensorClass == .norms {
            return [Float](repeating: 1, count: n)
        }
        if spec.tensorClass == .biases { return [Float](repeating: 0, count: n) }
        let std = standardDeviation
        return [Float](unsafeUninitializedCapacity: n) { buffer, count in
            for i in 0..<n { buffer[i] = generator.next() * std }
            count = n
        }
    }

    private func encoded(_ values: [Float], _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        switch dtype {
        case .f32:
            try values.withUnsafeBytes(body)
        case .bf16:
            let halves = values.map { value -> UInt16 in
                // Round to nearest even, as torch does when casting to bfloat16.
                let bits = value.bitPattern
                return UInt16(truncatingIfNeeded: (bits &+ 0x7fff &+ ((bits >> 16) & 1)) >> 16)
            }
            try halves.withUnsafeBytes(body)
        case .f16:
            try values.map { Float16($0).bitPattern }.withUnsafeBytes(body)
        }
    }
}

/// Standard normal numbers from a seeded SplitMix64 stream (Box–Muller), identical on every
/// platform for a given seed.
struct NormalGenerator {
    private var state: UInt64
    private var spare: Float?

    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

    mutating func nextUInt64() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func next() -> Float {
        if let s = spare {
            spare = nil
            return s
        }
        let u1 = (Double(nextUInt64() >> 11) + 1) / 9_007_199_254_740_993.0   // (0, 1]
        let u2 = Double(nextUInt64() >> 11) / 9_007_199_254_740_992.0         // [0, 1)
        let r = (-2 * Foundation.log(u1)).squareRoot()
        spare = Float(r * sin(2 * .pi * u2))
        return Float(r * cos(2 * .pi * u2))
    }
}
