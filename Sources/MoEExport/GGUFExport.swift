import Foundation
import MoEFormat
import MoEKernels
import MoETokenizer

/// What an export wrote and what it changed, for the command's output.
public struct GGUFExportReport: Sendable {
    public var architecture = ""
    public var tensorCount = 0
    public var fileBytes = 0
    /// ggml type name → tensors written in it.
    public var types: [String: Int] = [:]
    /// One line per thing the export did that is not a byte-for-byte copy.
    public var notes: [String] = []
    /// int8 → Q8_0: the largest absolute error, the largest relative to its row's largest
    /// weight, and the relative RMS error over all int8 weights (nil when there were none).
    public var int8MaxAbsError: Double?
    public var int8MaxRelativeError: Double?
    public var int8RelativeRMSError: Double?
    public var exact: Bool { int8MaxAbsError == nil && !notes.contains { $0.hasPrefix("rounded") } }

    public var text: String {
        var lines = ["wrote \(tensorCount) tensors (\(types.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))), "
                     + "\(fileBytes) bytes, architecture \(architecture)"]
        lines += notes
        if let a = int8MaxAbsError, let r = int8MaxRelativeError, let rms = int8RelativeRMSError {
            lines.append(String(format: "int8 -> Q8_0 error: max %.3g absolute, max %.3g of its row's largest weight, relative RMS %.3g", a, r, rms))
        }
        lines.append(exact ? "every weight is exact (llama.cpp decodes the values moepack decodes)" : "")
        return lines.filter { !$0.isEmpty }.joined(separator: "\n")
    }
}

/// Writes a bundle as a GGUF file for llama.cpp (docs/export.md) with the tensor names and
/// metadata keys of llama.cpp's own converter (convert_hf_to_gguf.py): ERNIE 4.5 MoE as
/// `ernie4_5-moe` (with the true `expert_shared_feed_forward_length`), Qwen3-MoE as
/// `qwen3moe`, Mixtral as `llama` with experts (q and k rows reordered for its rotary pairs).
public enum GGUFExporter {
    /// A pruned expert's correction bias: its biased score never reaches the top-k.
    public static let prunedBias: Float = -1e9

    public static func export(bundle: BundleFile, to outputPath: String, force: Bool = false,
                              pruned: PrunedExpertsMode? = nil) throws -> GGUFExportReport {
        let c = bundle.config
        let arch = try GGUFArchitecture(c, bundle: bundle.name)
        if FileManager.default.fileExists(atPath: outputPath) && !force {
            throw FormatError("\(outputPath) exists (pass --force to replace it)")
        }
        try bundle.checkPlausibleConfig()
        let experts = try ExportedExperts.resolve(bundle: bundle, requested: pruned)
        var report = GGUFExportReport()
        if let note = experts.note(c.router) { report.notes.append(note) }
        report.architecture = arch.name
        let names = c.names
        var plan: [(info: GGUFTensorInfo, write: (inout [UInt8], inout GGUFBlocks.Int8Error) throws -> Void)] = []

        func stored(_ name: String) throws -> BundleTensor {
            guard let t = bundle.tensor(name) else { throw FormatError("\(bundle.name): tensor \(name) is missing") }
            return t
        }
        func bytes(_ t: BundleTensor) throws -> PayloadBytes { try bundle.payload(t.payload, what: "tensor \(t.name)") }
        /// `permuteHeads`: the rows of that many heads reordered from rotate-half to adjacent pairs.
        func matrix(_ ggufName: String, _ name: String, permuteHeads: Int? = nil) throws {
            let t = try stored(name)
            guard t.shape.count == 2 else { throw FormatError("\(bundle.name): tensor \(name) is not 2-D") }
            let type = GGUFBlocks.nativeType(t.format)
            if t.format == .int8 { report.notes.appendOnce("rounded: int8 tensors become Q8_0 (per-32 f16 scales)") }
            let (rows, cols) = (t.shape[0], t.shape[1])
            plan.append((GGUFTensorInfo(name: ggufName, dimensions: [cols, rows], type: type), { out, err in
                let payload = try bytes(t)
                let start = out.count
                try withExtendedLifetime(payload) {
                    try GGUFBlocks.convert(payload.buffer, format: t.format, rows: rows, cols: cols, to: type,
                                           into: &out, int8Error: &err)
                }
                if let heads = permuteHeads { try GGUFArchitecture.pairRotaryRows(&out, from: start, rows: rows, heads: heads) }
            }))
        }
        func vector(_ ggufName: String, _ name: String, count: Int) throws {
            let t = try stored(name)
            guard t.format == .f32, t.elementCount == count else {
                throw FormatError("\(bundle.name): tensor \(name) should hold \(count) f32 values")
            }
            plan.append((GGUFTensorInfo(name: ggufName, dimensions: [count], type: .f32), { out, _ in
                var values = [Float](repeating: 0, count: count)
                let b = try bytes(t)
                withExtendedLifetime(b) { _ = values.withUnsafeMutableBytes { b.buffer.copyBytes(to: $0) } }
                values.withUnsafeBytes { out.append(contentsOf: $0) }
            }))
        }

        /// The router's rows of the written experts (all of them unless pruned experts are dropped).
        func routerRows(_ ggufName: String, _ name: String, rows: [Int]) throws {
            let t = try stored(name)
            guard t.format == .f32, t.shape.count == 2, t.shape[0] == c.moeNumExperts else {
                throw FormatError("\(bundle.name): router \(name) should be an f32 [\(c.moeNumExperts), hidden] matrix")
            }
            let width = t.shape[1]
            plan.append((GGUFTensorInfo(name: ggufName, dimensions: [width, rows.count], type: .f32), { out, _ in
                let b = try bytes(t)
                withExtendedLifetime(b) {
                    for r in rows { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: b.buffer[(r * width * 4)..<((r + 1) * width * 4)])) }
                }
            }))
        }

        try matrix("token_embd.weight", names.embedding)
        for l in 0..<c.numHiddenLayers {
            try vector("blk.\(l).attn_norm.weight", names.inputNorm(l), count: c.hiddenSize)
            try matrix("blk.\(l).attn_q.weight", names.attention(l, .q, bias: false), permuteHeads: arch.pairRotary ? c.numAttentionHeads : nil)
            try matrix("blk.\(l).attn_k.weight", names.attention(l, .k, bias: false), permuteHeads: arch.pairRotary ? c.numKeyValueHeads : nil)
            try matrix("blk.\(l).attn_v.weight", names.attention(l, .v, bias: false))
            try matrix("blk.\(l).attn_output.weight", names.attention(l, .o, bias: false))
            if c.qkNorm {
                try vector("blk.\(l).attn_q_norm.weight", names.queryNorm(l), count: c.headDim)
                try vector("blk.\(l).attn_k_norm.weight", names.keyNorm(l), count: c.headDim)
            }
            try vector("blk.\(l).ffn_norm.weight", names.postAttentionNorm(l), count: c.hiddenSize)
            let projections: [(FeedForwardProjection, String)] = [(.gate, "gate"), (.up, "up"), (.down, "down")]
            guard c.isMoELayer(l) else {
                for (p, n) in projections { try matrix("blk.\(l).ffn_\(n).weight", names.denseMLP(l, p, bias: false)) }
                continue
            }
            let written = experts.written[l]!, pruned = Set(experts.pruned(l))
            try routerRows("blk.\(l).ffn_gate_inp.weight", names.router(l), rows: written)
            if c.router.correctionBias {
                let bias = try stored(names.routerBias(l))
                guard bias.format == .f32, bias.elementCount == c.moeNumExperts else {
                    throw FormatError("\(bundle.name): tensor \(bias.name) should hold \(c.moeNumExperts) f32 values")
                }
                plan.append((GGUFTensorInfo(name: "blk.\(l).exp_probs_b.bias", dimensions: [written.count], type: .f32), { out, _ in
                    var values = [Float](repeating: 0, count: c.moeNumExperts)
                    let b = try bytes(bias)
                    withExtendedLifetime(b) { _ = values.withUnsafeMutableBytes { b.buffer.copyBytes(to: $0) } }
                    written.map { pruned.contains($0) ? prunedBias : values[$0] }.withUnsafeBytes { out.append(contentsOf: $0) }
                }))
            }
            for (p, n) in projections {
                let kept = written.filter { !pruned.contains($0) }
                let tensors = try kept.map { try stored(names.expert(l, $0, p)) }
                let formats = Set(tensors.map(\.format))
                let type = GGUFBlocks.commonType(formats)
                guard let shape = tensors.first?.shape, shape.count == 2, tensors.allSatisfy({ $0.shape == shape }) else {
                    throw FormatError("\(bundle.name): layer \(l) experts' \(n) tensors differ in shape")
                }
                if formats.count > 1 {
                    let exact = formats.allSatisfy { GGUFBlocks.isExact($0, to: type) }
                    report.notes.append("layer \(l) ffn_\(n)_exps: experts in \(formats.map(\.rawValue).sorted().joined(separator: ", ")) "
                                        + "share one tensor, written as \(type.name) (\(exact ? "exact" : "rounded"))")
                }
                if formats.contains(.int8) { report.notes.appendOnce("rounded: int8 tensors become Q8_0 (per-32 f16 scales)") }
                let byID = Dictionary(uniqueKeysWithValues: zip(kept, tensors))
                let (rows, cols) = (shape[0], shape[1])
                guard let expertBytes = type.rowBytes(cols: cols).map({ $0 * rows }) else {
                    throw FormatError("\(bundle.name): layer \(l) experts' \(n) rows of \(cols) cannot be \(type.name)")
                }
                plan.append((GGUFTensorInfo(name: "blk.\(l).ffn_\(n)_exps.weight", dimensions: [cols, rows, written.count], type: type), { out, err in
                    for e in written {
                        if let t = byID[e] {
                            let payload = try bytes(t)
                            try withExtendedLifetime(payload) {
                                try GGUFBlocks.convert(payload.buffer, format: t.format, rows: rows, cols: cols, to: type,
                                                       into: &out, int8Error: &err)
                            }
                        } else {
                            out.append(contentsOf: repeatElement(0, count: expertBytes))
                        }
                    }
                }))
            }
            if c.moeNumSharedExperts > 0 {
                for (p, n) in projections { try matrix("blk.\(l).ffn_\(n)_shexp.weight", names.sharedExperts(l, p, bias: false)) }
            }
        }
        try vector("output_norm.weight", names.finalNorm, count: c.hiddenSize)
        if !c.tieWordEmbeddings { try matrix("output.weight", names.lmHead) }

        let metadata = try metadata(bundle: bundle, arch: arch, types: plan.map(\.info.type), expertCount: experts.count)
        let writer = try GGUFWriter(outputPath: outputPath, metadata: metadata, tensors: plan.map(\.info))
        var err = GGUFBlocks.Int8Error()
        do {
            for entry in plan {
                var out: [UInt8] = []
                try entry.write(&out, &err)
                try writer.append(out)
                report.types[entry.info.type.name, default: 0] += 1
            }
            try writer.finish()
        } catch {
            writer.abort()
            throw error
        }
        report.tensorCount = plan.count
        report.fileBytes = (try? FileManager.default.attributesOfItem(atPath: outputPath)[.size] as? Int) ?? 0
        if err.weights > 0 {
            report.int8MaxAbsError = err.maxAbs
            report.int8MaxRelativeError = err.maxRelative
            report.int8RelativeRMSError = err.squaredWeights > 0 ? (err.squaredError / err.squaredWeights).squareRoot() : 0
        }
        return report
    }

    /// llama.cpp's `llama_ftype` for the type most weights have (display only).
    static func fileType(_ types: [GGMLType]) -> UInt32 {
        let counts = Dictionary(types.filter { $0 != .f32 }.map { ($0, 1) }, uniquingKeysWith: +)
        switch counts.max(by: { $0.value < $1.value })?.key {
        case nil, .f32?: return 0
        case .f16?: return 1
        case .q4_0?: return 2
        case .q4_1?: return 3
        case .q8_0?: return 7
        case .iq4_nl?: return 25
        case .bf16?: return 32
        }
    }

    static func metadata(bundle: BundleFile, arch: GGUFArchitecture, types: [GGMLType], expertCount: Int) throws -> [(String, GGUFValue)] {
        let c = bundle.config, a = arch.name
        func u32(_ key: String, _ v: Int) -> (String, GGUFValue) { ("\(a).\(key)", .uint32(UInt32(v))) }
        var m: [(String, GGUFValue)] = [
            ("general.architecture", .string(a)),
            ("general.type", .string("model")),
            ("general.name", .string(((bundle.name as NSString).deletingPathExtension))),
            u32("block_count", c.numHiddenLayers),
            u32("context_length", c.maxPositionEmbeddings),
            u32("embedding_length", c.hiddenSize),
            // llama.cpp's llama architecture takes the experts' width from feed_forward_length.
            u32("feed_forward_length", c.architecture == .mixtral ? c.moeIntermediateSize : c.intermediateSize),
            u32("attention.head_count", c.numAttentionHeads),
            u32("attention.head_count_kv", c.numKeyValueHeads),
            ("\(a).rope.freq_base", .float32(Float(c.ropeTheta))),
            ("\(a).attention.layer_norm_rms_epsilon", .float32(Float(c.rmsNormEps))),
            u32("attention.key_length", c.headDim),
            u32("attention.value_length", c.headDim),
            ("general.file_type", .uint32(fileType(types))),
            u32("expert_count", expertCount),
            u32("expert_used_count", c.moeK),
        ]
        switch c.architecture {
        case .ernie45MoE:
            m += [u32("interleave_moe_layer_step", 1), u32("leading_dense_block_count", c.moeLayers.first ?? c.numHiddenLayers),
                  u32("expert_feed_forward_length", c.moeIntermediateSize), u32("expert_shared_count", c.moeNumSharedExperts)]
            if c.moeNumSharedExperts > 0 {
                // The true width (llama.cpp's converter writes intermediate_size / num_key_value_heads).
                m.append(u32("expert_shared_feed_forward_length", c.sharedExpertSize))
            }
        case .qwen3MoE:
            m.append(u32("expert_feed_forward_length", c.moeIntermediateSize))
        default:
            m += [u32("rope.dimension_count", c.headDim), u32("vocab_size", c.vocabSize)]
        }
        m.append(("general.quantization_version", .uint32(2)))
        m += try GGUFTokenizer.metadata(bundle: bundle, bpePre: arch.bpePreTokenizer)
        return m
    }
}

/// The llama.cpp architecture a bundle maps to, and what the mapping changes.
struct GGUFArchitecture {
    let name: String
    /// llama.cpp's `llama` architecture rotates adjacent pairs: a rotate-half model's q and k
    /// rows are reordered (convert_hf_to_gguf.py's `permute`).
    let pairRotary: Bool
    /// The `tokenizer.ggml.pre` of a byte-level BPE tokenizer.json, nil when the family ships
    /// SentencePiece.
    let bpePreTokenizer: String?

    init(_ c: ModelConfig, bundle: String) throws {
        func refuse(_ why: String) -> FormatError { FormatError("\(bundle): \(why)") }
        guard !c.attentionBias, !c.mlpBias, !c.hasLMHeadBias else {
            throw refuse("bias tensors (ERNIE's use_bias) are not supported by the GGUF export: llama.cpp's MoE architectures have no q/k/v or MLP biases")
        }
        let allMoE = c.moeLayers == Array(0..<c.numHiddenLayers)
        switch c.architecture {
        case .ernie45MoE:
            guard let first = c.moeLayers.first, c.moeLayers == Array(first..<c.numHiddenLayers), !c.qkNorm else {
                throw refuse("llama.cpp's ernie4_5-moe needs every layer after the leading dense ones to be MoE "
                             + "(moe_layer_interval 1, moe_layer_end_index the last layer); this bundle's MoE layers are \(c.moeLayers)")
            }
            (name, pairRotary, bpePreTokenizer) = ("ernie4_5-moe", false, nil)
        case .qwen3MoE:
            guard allMoE else {
                throw refuse("llama.cpp's qwen3moe needs every layer to be MoE (no mlp_only_layers, decoder_sparse_step 1); "
                             + "this bundle's MoE layers are \(c.moeLayers)")
            }
            guard c.router.renormalize else {
                throw refuse("llama.cpp's qwen3moe always renormalises the top-k weights; this bundle has norm_topk_prob false")
            }
            (name, pairRotary, bpePreTokenizer) = ("qwen3moe", false, "qwen2")
        case .mixtral:
            guard c.slidingWindow == nil else {
                throw refuse("llama.cpp's llama architecture has no sliding window; this Mixtral bundle sets sliding_window \(c.slidingWindow!)")
            }
            guard allMoE else { throw refuse("Mixtral bundles are MoE in every layer; this one's MoE layers are \(c.moeLayers)") }
            (name, pairRotary, bpePreTokenizer) = ("llama", true, nil)
        default:
            throw refuse("GGUF export supports ERNIE 4.5 MoE, Qwen3-MoE and Mixtral bundles; this bundle is \(c.architecture.rawValue)")
        }
    }

    /// Reorders the `rows` converted rows at `start` of `out` per head from rotate-half order
    /// (row j of a head's first half pairs with row j of its second) to adjacent pairs
    /// (rows 2j, 2j+1): GGUF row 2j+i of a head is stored row i·half + j.
    static func pairRotaryRows(_ out: inout [UInt8], from start: Int, rows: Int, heads: Int) throws {
        let rowBytes = (out.count - start) / rows, headRows = rows / heads, half = headRows / 2
        guard heads > 0, rows % heads == 0, headRows % 2 == 0, rowBytes * rows == out.count - start else {
            throw FormatError("gguf export: \(rows) rows cannot be \(heads) heads of rotary pairs")
        }
        let source = Array(out[start...])
        for h in 0..<heads {
            for j in 0..<half {
                for i in 0..<2 {
                    let from = (h * headRows + i * half + j) * rowBytes, to = start + (h * headRows + 2 * j + i) * rowBytes
                    out.replaceSubrange(to..<(to + rowBytes), with: source[from..<(from + rowBytes)])
                }
            }
        }
    }
}

extension Array where Element == String {
    mutating func appendOnce(_ s: String) { if !contains(s) { append(s) } }
}
