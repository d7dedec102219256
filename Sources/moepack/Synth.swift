import ArgumentParser
import Foundation
import MoEConvert
import MoEFormat
import MoERuntime
import MoETokenizer

struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a random-initialised checkpoint of any shape and family (for benchmarks and size planning).",
        discussion: """
        Presets: \(ModelPreset.allCases.map(\.rawValue).joined(separator: ", ")).
        bench-moe is the benchmark shape (hidden 1024, 12 layers, 32 experts top-4, vocab 32000, \
        about 1.3 GB in bf16). The ernie-4.5, qwen3 and mixtral presets are the real models' shapes; \
        use --dry-run to see their sizes without writing anything.
        """)

    @Option(help: "A named shape (see above).")
    var preset: String?

    @Option(help: "A config.json to use instead of a preset.")
    var config: String?

    @Option(help: "Element type of the weights: bf16, f16 or f32.")
    var dtype = "bf16"

    @Option(help: "Output directory (must not exist).")
    var output: String?

    @Option(help: "Random seed.")
    var seed: UInt64 = 0

    @Option(help: "Largest shard size in MiB.")
    var shardSize = 2048

    @Option(help: "Copy tokenizer files from this model directory (default: the built-in tiny model).")
    var tokenizerFrom: String?

    @Option(help: "Keep only the first N decoder layers, each with the preset's real shapes (a real-size model that fits a smaller disk).")
    var layers: Int?

    @Flag(help: "Print the parameter counts, sizes, and each shipped profile's bundle size and bytes read per token, without writing anything.")
    var dryRun = false

    @Option(help: "With --dry-run: what a size target (e.g. 10GiB) would mean for this model (docs/size-targets.md).")
    var targetSize: String?

    @Option(help: "With --dry-run: what a size target in bits per weight would mean for this model.")
    var targetBpw: Double?

    func run() throws {
        var json: [String: Any]
        switch (preset, config) {
        case (let name?, nil):
            guard let p = ModelPreset(rawValue: name) else {
                throw ValidationError("unknown preset \(name) (available: \(ModelPreset.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            json = p.configJSON
        case (nil, let path?):
            guard let data = FileManager.default.contents(atPath: path),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw ValidationError("cannot read a JSON object from \(path)")
            }
            json = object
        default:
            throw ValidationError("give exactly one of --preset or --config")
        }
        guard let type = ["bf16": DType.bf16, "f16": .f16, "f32": .f32][dtype] else {
            throw ValidationError("--dtype must be bf16, f16 or f32")
        }
        if let layers {
            guard layers >= 1 else { throw ValidationError("--layers must be at least 1") }
            json = try Self.keepingLayers(layers, of: json)
        }
        let modelConfig = try ModelConfig(json: json)
        let layout = ModelLayout(config: modelConfig)
        let counts = layout.parameterCounts
        if dryRun {
            print(SynthSizes(layout: layout, dtype: type).text)
            if targetSize != nil || targetBpw != nil {
                let target: Int
                if let targetSize {
                    guard let b = ByteSize.parse(targetSize) else { throw ValidationError("--target-size must be a size such as 10GiB") }
                    target = b
                } else {
                    guard let b = targetBpw, b.isFinite, b > 0 else { throw ValidationError("--target-bpw must be positive") }
                    target = Int(b * Double(counts.total) / 8)
                }
                print(try SynthSizes.targetText(layout, target: target))
            }
            return
        }
        guard let output else { throw ValidationError("--output is required (or use --dry-run)") }
        try Self.checkFreeSpace(for: counts.total * type.byteSize, at: URL(fileURLWithPath: output))
        var synth = Synthesizer(configJSON: json)
        synth.dtype = type
        synth.seed = seed
        synth.shardBytes = max(1, shardSize) << 20
        let tokenizerDir = tokenizerFrom.map { URL(fileURLWithPath: $0) } ?? BuiltinModel.directory
        if let tokenizerDir {
            synth.extraFiles = (Tokenizer.modelFileNames + Tokenizer.configFileNames)
                .map { tokenizerDir.appendingPathComponent($0) }
                .filter { FileManager.default.fileExists(atPath: $0.path) }
        }
        let progress = ProgressLine(label: "synth", total: layout.tensors.count)
        try synth.write(to: URL(fileURLWithPath: output)) { done, _ in progress.update(done) }
        progress.finish()
        let bytes = counts.total * type.byteSize
        FileHandle.standardError.write(Data("wrote \(output): \(counts.total) parameters, \(CheckpointSummary.bytes(bytes))\n".utf8))
    }
}

extension Synth {
    /// The config with only its first `count` decoder layers; the MoE layer range is cut to fit.
    static func keepingLayers(_ count: Int, of json: [String: Any]) throws -> [String: Any] {
        var json = json
        let total = (json["num_hidden_layers"] as? Int) ?? count
        guard count <= total else { throw ValidationError("--layers \(count) is more than the model's \(total) layers") }
        json["num_hidden_layers"] = count
        if let end = json["moe_layer_end_index"] as? Int, end == -1 || end >= count { json["moe_layer_end_index"] = count - 1 }
        return json
    }

    /// Refuses before writing when the weights (plus 1% and 64 MiB for headers and tokenizer
    /// files) do not fit the free space of the output's file system.
    static func checkFreeSpace(for weightBytes: Int, at output: URL) throws {
        let parent = output.deletingLastPathComponent().path
        guard let attributes = try? FileManager.default.attributesOfFileSystem(forPath: parent),
              let free = (attributes[.systemFreeSize] as? NSNumber)?.int64Value else { return }
        let needed = Int64(weightBytes) + Int64(weightBytes) / 100 + (64 << 20)
        guard needed <= free else {
            throw ValidationError("the checkpoint needs \(CheckpointSummary.bytes(Int(needed))) on disk but \(parent) has "
                                  + "\(CheckpointSummary.bytes(Int(free))) free; use --layers N to keep fewer layers")
        }
    }
}

/// Parameter counts and weight bytes of a layout at a given dtype.
struct SynthSizes {
    let layout: ModelLayout
    let dtype: DType

    var text: String {
        let c = layout.config
        let counts = layout.parameterCounts
        var lines = [
            "architecture \(c.architecture.rawValue)",
            "parameters   \(counts.total) total, \(counts.activePerToken) active per token",
            "weights      \(CheckpointSummary.bytes(counts.total * dtype.byteSize)) as \(dtype.rawValue), " +
                "\(CheckpointSummary.bytes(counts.activePerToken * dtype.byteSize)) read per token",
        ]
        let byClass = Dictionary(grouping: layout.tensors, by: \.tensorClass)
        for cls in TensorClass.allCases {
            guard let tensors = byClass[cls] else { continue }
            lines.append("  \(cls.rawValue.padding(toLength: 15, withPad: " ", startingAt: 0)) \(tensors.reduce(0) { $0 + $1.elementCount })")
        }
        lines.append("profile           bundle (before zstd)   read per token")
        for name in ShippedProfiles.all.keys.sorted() {
            guard let profile = try? Profile.load(name), let size = try? Self.bytes(layout, profile) else { continue }
            lines.append("  \(name.padding(toLength: 16, withPad: " ", startingAt: 0))"
                + "\(CheckpointSummary.bytes(size.total).padding(toLength: 23, withPad: " ", startingAt: 0))"
                + CheckpointSummary.bytes(size.perToken))
        }
        return lines.joined(separator: "\n")
    }

    /// What `target` bytes leave for the routed experts with every other weight at int8 or at
    /// q4g64 (the solver chooses per weight; these are the two ends it usually lands between).
    static func targetText(_ layout: ModelLayout, target: Int) throws -> String {
        let counts = layout.parameterCounts
        let experts = layout.tensors.filter { $0.tensorClass == .routedExperts }.reduce(0) { $0 + $1.elementCount }
        var lines = [String(format: "target       %@ = %.3f bits/weight over %ld parameters", CheckpointSummary.bytes(target),
                            Double(target * 8) / Double(max(counts.total, 1)), counts.total)]
        for rest in [WeightFormat.int8, .q4g64] {
            var other = 0
            for t in layout.tensors where t.tensorClass != .routedExperts {
                let is2D = t.shape.count == 2 && Profile.quantizableClasses.contains(t.tensorClass)
                other += is2D ? (rest.matrixBytes(rows: t.shape[0], cols: t.shape[1]) ?? WeightFormat.int8.matrixBytes(rows: t.shape[0], cols: t.shape[1])!) : 4 * t.elementCount
            }
            let left = target - other
            let text = left <= 0 ? "nothing is left for the routed experts"
                : String(format: "routed experts get %.2f bits/weight on average%@", Double(left * 8) / Double(max(experts, 1)),
                         Double(left * 8) / Double(max(experts, 1)) < 4.125 ? " (below q4g128's 4.125: the solver prunes)" : "")
            lines.append("  other weights \(rest.rawValue): \(CheckpointSummary.bytes(other)); \(text)")
        }
        return lines.joined(separator: "\n")
    }

    /// Weight bytes a bundle of `layout` under `profile` stores, and the bytes one decoded token
    /// reads: every non-expert weight, moe_k routed experts per MoE layer, the lm_head (the
    /// embedding matrix when tied) and one embedding row. Pruning keeps (1 - ratio) of the
    /// routed experts, as the per-layer budget does.
    static func bytes(_ layout: ModelLayout, _ profile: Profile) throws -> (total: Int, perToken: Int) {
        let c = layout.config
        let experts = max(c.moeNumExperts, 1)
        let kept = profile.prune.map { experts - Int(($0.ratio * Double(experts)).rounded()) } ?? experts
        var total = 0, perToken = 0
        for t in layout.tensors {
            let is2D = t.shape.count == 2
            let format = profile.format(for: t.tensorClass, cols: is2D ? t.shape[1] : t.elementCount, is2D: is2D)
            let n = is2D ? try format.byteCount(rows: t.shape[0], cols: t.shape[1]) : 4 * t.elementCount
            switch t.tensorClass {
            case .routedExperts:
                // Each layer's experts: kept of them stored, moe_k read per token.
                total += n * kept / experts
                perToken += n * c.moeK / experts
            case .embeddings:
                total += n
                perToken += c.tieWordEmbeddings ? n : n / max(c.vocabSize, 1)
            default:
                total += n
                perToken += n
            }
        }
        return (total, perToken)
    }
}
