import Foundation
import MoEFormat
import MoEKernels
import MoERuntime

/// Progress of a conversion, reported after every tensor.
public struct ConvertProgress: Sendable {
    public var tensorsDone: Int
    public var tensorsTotal: Int
    public var sourceBytesDone: Int
    public var sourceBytesTotal: Int
    public var bytesWritten: Int
}

public struct ConvertOptions: Sendable {
    public var profile: Profile
    /// Implements the profile's prune stage; required when the profile lists one.
    public var pruneStage: (any PruneStage)?
    /// Overrides the profile's prune ratio.
    public var pruneRatio: Double?
    /// Calibration-aware rounding: each input channel's importance from calibration statistics
    /// (docs/quantization.md); nil rounds to nearest.
    public var importance: ImportanceMap?
    /// Error-compensating (GPTQ) rounding from the Gram matrices of each weight's inputs
    /// (docs/quantization.md); nil keeps `importance`'s rounding.
    public var compensation: Compensation?
    /// A size solver's plan: a format per weight and the experts to prune, instead of the
    /// profile's formats and prune stage (the profile still sets compression).
    public var plan: SizePlan?
    public var progress: (@Sendable (ConvertProgress) -> Void)?

    public init(profile: Profile, pruneStage: (any PruneStage)? = nil, pruneRatio: Double? = nil,
                importance: ImportanceMap? = nil, compensation: Compensation? = nil, plan: SizePlan? = nil,
                progress: (@Sendable (ConvertProgress) -> Void)? = nil) {
        self.plan = plan
        self.compensation = compensation
        self.profile = profile
        self.pruneStage = pruneStage
        self.pruneRatio = pruneRatio
        self.importance = importance
        self.progress = progress
    }
}

/// Where the Gram matrices of error-compensating rounding come from.
public enum Compensation: Sendable {
    /// Already collected (`InputHessians.collect`, all layers in memory).
    case hessians(InputHessians)
    /// Collected while converting (`InputHessians.stream`): one layer's matrices at a time, each
    /// layer's tensors quantized as soon as the pass over these windows is through it.
    case pass(windows: [[Int32]])
}

/// Checkpoint → bundle, streaming: one tensor at a time is read (in row blocks), quantized,
/// compressed and appended, so memory stays near one row block whatever the model size.
public enum Converter {
    /// Tokenizer and generation files carried into the bundle when the checkpoint has them.
    public static let carriedFiles = ["tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                      "added_tokens.json", "chat_template.jinja", "generation_config.json"]
    /// Rows are processed in blocks of about this many f32 bytes.
    static let blockBytes = 4 << 20

    @discardableResult
    public static func convert(checkpoint directory: String, output: String, options: ConvertOptions) throws -> BundleSummary {
        let checkpoint = try Checkpoint(directory: URL(fileURLWithPath: directory))
        let config = checkpoint.config
        let layout = ModelLayout(config: config)
        try layout.validate(names: checkpoint.tensorNames) { try checkpoint.info($0).shape }
        let profile = options.profile

        var parameters = ["profile": profile.name,
                          "rounding": options.compensation != nil ? "gptq" : (options.importance == nil ? "nearest" : "calibrated")]
        if let importance = options.importance {
            try importance.stats.checkApplies(to: ModelIdentity.compute(CheckpointWeights(checkpoint: checkpoint)), config: config)
            parameters["rounding_calibration_identity"] = importance.stats.model.identity
            parameters["rounding_calibration_tokens"] = String(importance.stats.data.tokens)
        }
        var pruning: [String: [Int]]? = nil
        // --prune-ratio composes with any profile: one without a prune stage gets the default
        // criterion and a per-layer budget (docs/convert.md).
        if let plan = options.plan {
            guard options.pruneRatio == nil, profile.prune == nil else {
                throw ProfileError("a size target chooses the pruning itself: leave out --prune-ratio and use a profile without a prune stage")
            }
            pruning = try PruneMap.validated(Dictionary(uniqueKeysWithValues: plan.kept.map { (Int($0.key) ?? -1, $0.value) }), config: config)
            parameters["size_target"] = plan.target
            parameters["size_target_bytes"] = String(plan.targetBytes)
            parameters["plan_predicted_kl"] = String(format: "%.6g", plan.predictedKL)
            var hasher = SHA256Hasher()
            hasher.update(try plan.jsonData())
            parameters["plan_sha256"] = hasher.finalizeHex()
        } else if var settings = profile.prune ?? options.pruneRatio.map({ PruneSettings(ratio: $0, criterion: .default) }) {
            if let ratio = options.pruneRatio {
                guard ratio >= 0, ratio < 1 else { throw ProfileError("--prune-ratio \(ratio) is outside [0, 1)") }
                settings.ratio = ratio
            }
            guard let stage = options.pruneStage else {
                throw ProfileError(profile.prune != nil
                    ? "profile \(profile.name) has a prune stage: give calibration statistics (--calibration STATS.json)"
                    : "--prune-ratio needs calibration statistics (--calibration STATS.json)")
            }
            guard config.moeNumExperts > 0 else { throw ProfileError("profile \(profile.name) prunes experts, but the model has none") }
            pruning = try PruneMap.validated(stage.keptExperts(checkpoint: checkpoint, settings: settings), config: config)
            parameters["prune_ratio"] = String(settings.ratio)
            parameters["prune_criterion"] = settings.criterion.rawValue
            parameters["prune_budget"] = settings.budget.rawValue
            parameters.merge(stage.provenance) { a, _ in a }
        }

        let sources = try sourceFiles(checkpoint: checkpoint)
        let writer = try BundleWriter(outputPath: output)
        do {
            var files: [BundleFileEntry] = []
            for name in carriedFiles {
                let url = checkpoint.directory.appendingPathComponent(name)
                guard let data = FileManager.default.contents(atPath: url.path) else { continue }
                let location = try data.withUnsafeBytes { try writer.addPayload($0) }
                files.append(BundleFileEntry(name: name, payload: location))
            }
            if let plan = options.plan {
                let location = try plan.jsonData().withUnsafeBytes { try writer.addPayload($0) }
                files.append(BundleFileEntry(name: SizePlan.fileName, payload: location))
            }

            var specs = layout.tensors.filter { spec in
                if spec.optional && !checkpoint.contains(spec.name) { return false }
                guard let layer = spec.layer, let expert = spec.expert, let kept = pruning?[String(layer)] else { return true }
                return kept.contains(expert)
            }
            // Multi-token-prediction tensors travel along unmodified (docs/convert.md).
            specs += try checkpoint.tensorNames.filter(checkpoint.config.architecture.family.isCarried).map { name in
                TensorSpec(name: name, shape: try checkpoint.info(name).shape, tensorClass: .mtp, layer: nil, expert: nil)
            }
            let sourceTotal = try specs.reduce(0) { $0 + (try checkpoint.info($1.name).byteRange.count) }
            var progress = ConvertProgress(tensorsDone: 0, tensorsTotal: specs.count, sourceBytesDone: 0,
                                           sourceBytesTotal: sourceTotal, bytesWritten: 0)
            let reader = TensorReader(checkpoint: checkpoint)
            var packer = TensorPacker(reader: reader, writer: writer, profile: profile, rounding: WeightRounding(importance: options.importance),
                                      formats: options.plan?.formats ?? [:])
            // By position in `specs`: the streamed pass packs layer by layer, the manifest lists layout order.
            var packed: [Int: BundleTensor] = [:]
            func pack(_ i: Int) throws {
                // The router stays whole (every original expert's row and correction bias): the
                // runtime masks pruned experts out of the top-k (docs/pruning.md).
                let tensor = try packer.pack(specs[i])
                packed[i] = tensor
                progress.tensorsDone += 1
                progress.sourceBytesDone += try checkpoint.info(specs[i].name).byteRange.count
                progress.bytesWritten = tensor.payload.offset + tensor.payload.length
                options.progress?(progress)
            }
            switch options.compensation {
            case nil:
                for i in specs.indices { try pack(i) }
            case .hessians(let hessians):
                packer.rounding = WeightRounding(importance: options.importance, hessians: hessians)
                for i in specs.indices { try pack(i) }
                parameters["gptq_tokens"] = String(hessians.tokens)
            case .pass(let windows):
                let byLayer = Dictionary(grouping: specs.indices.filter { specs[$0].layer != nil && specs[$0].tensorClass != .mtp }) {
                    specs[$0].layer!
                }
                let hessians = try InputHessians.stream(checkpoint: checkpoint, windows: windows) { layer, hessians in
                    packer.rounding = WeightRounding(importance: options.importance, hessians: hessians)
                    for i in byLayer[layer] ?? [] { try pack(i) }
                }
                packer.rounding = WeightRounding(importance: options.importance, hessians: hessians)
                for i in specs.indices where packed[i] == nil { try pack(i) }
                parameters["gptq_tokens"] = String(hessians.tokens)
            }
            if options.compensation != nil {
                parameters["gptq_rows"] = "\(packer.compensatedRows) of \(packer.compensableRows)"
            }
            let tensors = specs.indices.map { packed[$0]! }
            let manifest = BundleManifest(
                alignment: writer.alignment, configJSON: String(decoding: checkpoint.configData, as: UTF8.self),
                tensors: tensors, files: files, profile: ProfileRecord(name: profile.name, toml: profile.source),
                pruning: pruning, provenance: Provenance(sourceFiles: sources, parameters: parameters))
            try writer.finish(manifest: manifest)
        } catch {
            writer.abort()
            throw error
        }
        return try BundleSummary(bundle: BundleFile(path: output))
    }

    /// SHA-256 of every file the bundle is made from, by base name, sorted.
    static func sourceFiles(checkpoint: Checkpoint) throws -> [SourceFileRecord] {
        var names = Set(checkpoint.shards.map { ($0.path as NSString).lastPathComponent })
        names.insert("config.json")
        for name in carriedFiles + ["model.safetensors.index.json"] {
            if FileManager.default.fileExists(atPath: checkpoint.directory.appendingPathComponent(name).path) { names.insert(name) }
        }
        return try names.sorted().map { name in
            let path = checkpoint.directory.appendingPathComponent(name).path
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            return SourceFileRecord(name: name, bytes: size, sha256: try SHA256Hasher.hexDigest(ofFile: path))
        }
    }
}
