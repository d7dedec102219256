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

/// Writes a bundle as a GGUF file for llama.cpp (docs/export.md). ERNIE 4.5 MoE bundles
/// (`Ernie4_5_MoeForCausalLM`) map to llama.cpp's `ernie4_5-moe` architecture with the tensor
/// names and metadata keys of llama.cpp's own converter (convert_hf_to_gguf.py), except that
/// `expert_shared_feed_forward_length` is the true shared width.
public enum GGUFExporter {
    /// A pruned expert's correction bias: its biased score never reaches the top-k.
    public static let prunedBias: Float = -1e9

    public static func export(bundle: BundleFile, to outputPath: String, force: Bool = false,
                              pruned: PrunedExpertsMode? = nil) throws -> GGUFExportReport {
        let c = bundle.config
        guard c.architecture == .ernie45MoE else {
            throw FormatError("\(bundle.name): GGUF export supports ERNIE 4.5 MoE bundles (Ernie4_5_MoeForCausalLM); "
                              + "this bundle is \(c.architecture.rawValue)")
        }
        guard !c.attentionBias, !c.mlpBias, !c.hasLMHeadBias, !c.qkNorm else {
            throw FormatError("\(bundle.name): ERNIE with use_bias is not supported by the GGUF export (llama.cpp's ernie4_5-moe has no q/k/v or MLP biases)")
        }
        guard let first = c.moeLayers.first, c.moeLayers == Array(first..<c.numHiddenLayers) else {
            throw FormatError("\(bundle.name): llama.cpp's ernie4_5-moe needs every layer after the leading dense ones to be MoE "
                              + "(moe_layer_interval 1, moe_layer_end_index the last layer); this bundle's MoE layers are \(c.moeLayers)")
        }
        if FileManager.default.fileExists(atPath: outputPath) && !force {
            throw FormatError("\(outputPath) exists (pass --force to replace it)")
        }
        try bundle.checkPlausibleConfig()
        let experts = try ExportedExperts.resolve(bundle: bundle, requested: pruned)
        var report = GGUFExportReport()
        if let note = experts.note(c.router) { report.notes.append(note) }
        report.architecture = "ernie4_5-moe"
        let names = c.names
        var plan: [(info: GGUFTensorInfo, write: (inout [UInt8], inout GGUFBlocks.Int8Error) throws -> Void)] = []

        func stored(_ name: String) throws -> BundleTensor {
            guard let t = bundle.tensor(name) else { throw FormatError("\(bundle.name): tensor \(name) is missing") }
            return t
        }
        func bytes(_ t: BundleTensor) throws -> PayloadBytes { try bundle.payload(t.payload, what: "tensor \(t.name)") }
        func matrix(_ ggufName: String, _ name: String) throws {
            let t = try stored(name)
            guard t.shape.count == 2 else { throw FormatError("\(bundle.name): tensor \(name) is not 2-D") }
            let type = GGUFBlocks.nativeType(t.format)
            if t.format == .int8 { report.notes.appendOnce("rounded: int8 tensors become Q8_0 (per-32 f16 scales)") }
            plan.append((GGUFTensorInfo(name: ggufName, dimensions: [t.shape[1], t.shape[0]], type: type), { out, err in
                let payload = try bytes(t)
                try withExtendedLifetime(payload) {
                    try GGUFBlocks.convert(payload.buffer, format: t.format, rows: t.shape[0], cols: t.shape[1], to: type,
                                           into: &out, int8Error: &err)
                }
            }))
        }
        func vector(_ ggufName: String, _ name: String, count: Int, override: [Int: Float] = [:]) throws {
            let t = try stored(name)
            guard t.format == .f32, t.elementCount == count else {
                throw FormatError("\(bundle.name): tensor \(name) should hold \(count) f32 values")
            }
            plan.append((GGUFTensorInfo(name: ggufName, dimensions: [count], type: .f32), { out, _ in
                var values = [Float](repeating: 0, count: count)
                let b = try bytes(t)
                withExtendedLifetime(b) { _ = values.withUnsafeMutableBytes { b.buffer.copyBytes(to: $0) } }
                for (i, v) in override { values[i] = v }
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
            for (p, n) in [(AttentionProjection.q, "attn_q"), (.k, "attn_k"), (.v, "attn_v"), (.o, "attn_output")] {
                try matrix("blk.\(l).\(n).weight", names.attention(l, p, bias: false))
            }
            try vector("blk.\(l).ffn_norm.weight", names.postAttentionNorm(l), count: c.hiddenSize)
            let projections: [(FeedForwardProjection, String)] = [(.gate, "gate"), (.up, "up"), (.down, "down")]
            guard c.isMoELayer(l) else {
                for (p, n) in projections { try matrix("blk.\(l).ffn_\(n).weight", names.denseMLP(l, p, bias: false)) }
                continue
            }
            let written = experts.written[l]!, pruned = Set(experts.pruned(l))
            try routerRows("blk.\(l).ffn_gate_inp.weight", names.router(l), rows: written)
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

        let metadata = try metadata(bundle: bundle, types: plan.map(\.info.type), expertCount: experts.count)
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

    static func metadata(bundle: BundleFile, types: [GGMLType], expertCount: Int) throws -> [(String, GGUFValue)] {
        let c = bundle.config, a = "ernie4_5-moe"
        var m: [(String, GGUFValue)] = [
            ("general.architecture", .string(a)),
            ("general.type", .string("model")),
            ("general.name", .string(((bundle.name as NSString).deletingPathExtension))),
            ("\(a).block_count", .uint32(UInt32(c.numHiddenLayers))),
            ("\(a).context_length", .uint32(UInt32(c.maxPositionEmbeddings))),
            ("\(a).embedding_length", .uint32(UInt32(c.hiddenSize))),
            ("\(a).feed_forward_length", .uint32(UInt32(c.intermediateSize))),
            ("\(a).attention.head_count", .uint32(UInt32(c.numAttentionHeads))),
            ("\(a).attention.head_count_kv", .uint32(UInt32(c.numKeyValueHeads))),
            ("\(a).rope.freq_base", .float32(Float(c.ropeTheta))),
            ("\(a).attention.layer_norm_rms_epsilon", .float32(Float(c.rmsNormEps))),
            ("\(a).attention.key_length", .uint32(UInt32(c.headDim))),
            ("\(a).attention.value_length", .uint32(UInt32(c.headDim))),
            ("general.file_type", .uint32(fileType(types))),
            ("\(a).expert_count", .uint32(UInt32(expertCount))),
            ("\(a).expert_used_count", .uint32(UInt32(c.moeK))),
            ("\(a).interleave_moe_layer_step", .uint32(1)),
            ("\(a).leading_dense_block_count", .uint32(UInt32(c.moeLayers.first ?? c.numHiddenLayers))),
            ("\(a).expert_feed_forward_length", .uint32(UInt32(c.moeIntermediateSize))),
            ("\(a).expert_shared_count", .uint32(UInt32(c.moeNumSharedExperts))),
        ]
        if c.moeNumSharedExperts > 0 {
            // The true width (llama.cpp's converter writes intermediate_size / num_key_value_heads).
            m.append(("\(a).expert_shared_feed_forward_length", .uint32(UInt32(c.sharedExpertSize))))
        }
        m.append(("general.quantization_version", .uint32(2)))
        m += try GGUFTokenizer.metadata(bundle: bundle)
        return m
    }
}

extension Array where Element == String {
    mutating func appendOnce(_ s: String) { if !contains(s) { append(s) } }
}
