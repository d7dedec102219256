import Foundation
import MoEConvert
import MoEExport
import MoEFormat
import MoEKernels
import MoERuntime
import MoETestSupport
import XCTest

/// GGUF exports read back by llama.cpp's own Python reader, the `gguf` package from PyPI
/// (tools/setup.sh installs it into .venv): tools/gguf_check.py checks the metadata keys
/// llama.cpp's ernie4_5-moe loader needs and dequantizes every tensor with
/// `gguf.quants.dequantize`, which must equal moepack's own decoding of the bundle tensors,
/// stacked here in the order each export mode promises.
final class GGUFPackageTests: ExportTestCase {
    /// A small random checkpoint of another family that llama.cpp's architecture holds (every
    /// layer MoE), with a tokenizer: Qwen3-MoE with the byte-level BPE fixture, Mixtral with
    /// the built-in SentencePiece model.
    func synthesized(_ family: String) throws -> URL {
        let out = dir.appendingPathComponent(family)
        var config: [String: Any] = ["hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                                     "num_experts_per_tok": 2, "hidden_act": "silu", "max_position_embeddings": 512,
                                     "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": false]
        var s: Synthesizer
        if family == "qwen3" {
            config.merge(["architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "vocab_size": 1810, "head_dim": 16,
                          "intermediate_size": 96, "moe_intermediate_size": 32, "num_experts": 8, "norm_topk_prob": true,
                          "decoder_sparse_step": 1, "mlp_only_layers": [Int](), "eos_token_id": 1800]) { $1 }
            s = Synthesizer(configJSON: config)
            let tokenizer = Fixtures.root.appendingPathComponent("tokenizer_bpe/qwen2_bpe")
            s.extraFiles = ["tokenizer.json", "tokenizer_config.json"].map { tokenizer.appendingPathComponent($0) }
        } else {
            config.merge(["architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "vocab_size": 3072, "intermediate_size": 32,
                          "num_local_experts": 8, "bos_token_id": 1, "eos_token_id": 2]) { $1 }
            s = Synthesizer(configJSON: config)
            s.extraFiles = ["tokenizer.model", "tokenizer_config.json"].map { Fixtures.tinyModel.appendingPathComponent($0) }
        }
        s.dtype = .f32
        s.seed = 7
        try s.write(to: out)
        return out
    }

    /// moepack's decoding of a stored tensor, with its format and shape.
    func values(_ b: BundleFile, _ name: String) throws -> (values: [Float], format: WeightFormat, shape: [Int]) {
        let t = try XCTUnwrap(b.tensor(name), name)
        return (try decoded(b, name), t.format, t.shape)
    }

    /// The ggml type each bundle format is promised to become, and the bound of its error.
    func expectedType(_ f: WeightFormat) -> (String, Double) {
        switch f {
        case .f32: ("F32", 0)
        case .int8: ("Q8_0", 1.0 / 2048)
        case .nl4g32: ("IQ4_NL", 0)
        case .bf16: ("BF16", 0)
        case .int4g32a, .int4g64a, .int4g128a: ("Q4_1", 0)
        default: ("Q4_0", 0)
        }
    }

    /// Writes the expected tensors and metadata of `b`'s export, runs the checker, returns its report.
    func check(_ b: BundleFile, mode: PrunedExpertsMode?, label: String) throws -> [String: Any] {
        let gguf = dir.appendingPathComponent("\(label).gguf").path
        _ = try GGUFExporter.export(bundle: b, to: gguf, pruned: mode)
        let c = b.config, names = c.names
        let refs = dir.appendingPathComponent("\(label)-expected")
        try FileManager.default.createDirectory(at: refs, withIntermediateDirectories: true)
        var tensors: [String: Any] = [:]
        func add(_ name: String, _ v: [Float], shape: [Int], type: String, tolerance: Double) throws {
            let file = "\(tensors.count).npy"
            try Npy.encode(v, shape: shape).write(to: refs.appendingPathComponent(file))
            tensors[name] = ["type": type, "shape": shape, "npy": file, "tolerance": tolerance]
        }
        func matrix(_ name: String, _ source: String) throws {
            let (v, f, shape) = try values(b, source)
            let (type, tol) = expectedType(f)
            try add(name, v, shape: shape, type: type, tolerance: tol)
        }
        func vector(_ name: String, _ source: String) throws {
            let (v, _, _) = try values(b, source)
            try add(name, v, shape: [v.count], type: "F32", tolerance: 0)
        }
        try matrix("token_embd.weight", names.embedding)
        try vector("output_norm.weight", names.finalNorm)
        if !c.tieWordEmbeddings { try matrix("output.weight", names.lmHead) }
        var expertCount = c.moeNumExperts
        /// llama.cpp's `llama` architecture pairs rotary dims (2j, 2j+1): row 2j+i of a head is
        /// the checkpoint's row i·half + j (convert_hf_to_gguf.py's permute).
        func pairRows(_ v: [Float], rows: Int, heads: Int) -> [Float] {
            let cols = v.count / rows, per = rows / heads, half = per / 2
            var out = v
            for h in 0..<heads { for j in 0..<half { for i in 0..<2 {
                let to = (h * per + 2 * j + i) * cols, from = (h * per + i * half + j) * cols
                out.replaceSubrange(to..<(to + cols), with: v[from..<(from + cols)])
            } } }
            return out
        }
        let permute = c.architecture == .mixtral
        for l in 0..<c.numHiddenLayers {
            try vector("blk.\(l).attn_norm.weight", names.inputNorm(l))
            try vector("blk.\(l).ffn_norm.weight", names.postAttentionNorm(l))
            for (p, n, heads) in [(AttentionProjection.q, "attn_q", c.numAttentionHeads), (.k, "attn_k", c.numKeyValueHeads)] {
                let (v, f, shape) = try values(b, names.attention(l, p, bias: false))
                let (type, tol) = expectedType(f)
                try add("blk.\(l).\(n).weight", permute ? pairRows(v, rows: shape[0], heads: heads) : v, shape: shape, type: type, tolerance: tol)
            }
            try matrix("blk.\(l).attn_v.weight", names.attention(l, .v, bias: false))
            try matrix("blk.\(l).attn_output.weight", names.attention(l, .o, bias: false))
            if c.qkNorm {
                try vector("blk.\(l).attn_q_norm.weight", names.queryNorm(l))
                try vector("blk.\(l).attn_k_norm.weight", names.keyNorm(l))
            }
            guard c.isMoELayer(l) else {
                for p in FeedForwardProjection.allCases { try matrix("blk.\(l).ffn_\(p.rawValue).weight", names.denseMLP(l, p, bias: false)) }
                continue
            }
            if c.moeNumSharedExperts > 0 {
                for p in FeedForwardProjection.allCases { try matrix("blk.\(l).ffn_\(p.rawValue)_shexp.weight", names.sharedExperts(l, p, bias: false)) }
            }
            let kept = b.keptExperts(layer: l) ?? Array(0..<c.moeNumExperts)
            // drop: the kept experts in id order; mask (or nothing pruned): all, pruned ones zero.
            let written = mode == .drop ? kept.sorted() : Array(0..<c.moeNumExperts)
            expertCount = written.count
            let router = try values(b, names.router(l)).values, width = c.hiddenSize
            try add("blk.\(l).ffn_gate_inp.weight", written.flatMap { router[($0 * width)..<(($0 + 1) * width)] },
                    shape: [written.count, width], type: "F32", tolerance: 0)
            if c.router.correctionBias {
                let bias = try values(b, names.routerBias(l)).values
                try add("blk.\(l).exp_probs_b.bias", written.map { kept.contains($0) ? bias[$0] : GGUFExporter.prunedBias },
                        shape: [written.count], type: "F32", tolerance: 0)
            }
            for p in FeedForwardProjection.allCases {
                let first = try values(b, names.expert(l, kept[0], p))
                let (type, tol) = expectedType(first.format)
                var stacked: [Float] = []
                for e in written {
                    stacked += kept.contains(e) ? try values(b, names.expert(l, e, p)).values : [Float](repeating: 0, count: first.values.count)
                }
                try add("blk.\(l).ffn_\(p.rawValue)_exps.weight", stacked, shape: [written.count] + first.shape, type: type, tolerance: tol)
            }
        }
        let a = ["Ernie4_5_MoeForCausalLM": "ernie4_5-moe", "Qwen3MoeForCausalLM": "qwen3moe", "MixtralForCausalLM": "llama"][c.architecture.rawValue]!
        var metadata: [String: Any] = [
            "general.architecture": a, "\(a).block_count": c.numHiddenLayers, "\(a).embedding_length": c.hiddenSize,
            "\(a).expert_count": expertCount, "\(a).expert_used_count": c.moeK,
            "\(a).attention.head_count": c.numAttentionHeads, "\(a).attention.head_count_kv": c.numKeyValueHeads,
            "\(a).attention.key_length": c.headDim,
        ]
        var required = ["\(a).context_length", "\(a).feed_forward_length", "\(a).rope.freq_base",
                        "\(a).attention.layer_norm_rms_epsilon", "\(a).attention.value_length", "general.alignment",
                        "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.eos_token_id"]
        switch c.architecture {
        case .ernie45MoE:
            metadata.merge(["\(a).expert_feed_forward_length": c.moeIntermediateSize, "\(a).expert_shared_feed_forward_length": c.sharedExpertSize,
                            "\(a).leading_dense_block_count": c.moeLayers[0], "tokenizer.ggml.model": "llama"]) { $1 }
            required += ["\(a).interleave_moe_layer_step", "\(a).expert_shared_count", "tokenizer.ggml.scores", "tokenizer.ggml.bos_token_id"]
        case .qwen3MoE:
            metadata.merge(["\(a).expert_feed_forward_length": c.moeIntermediateSize, "\(a).feed_forward_length": c.intermediateSize,
                            "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "qwen2"]) { $1 }
            required += ["tokenizer.ggml.merges"]
        default:
            // Mixtral: the experts' width is llama's feed_forward_length.
            metadata.merge(["\(a).feed_forward_length": c.moeIntermediateSize, "\(a).rope.dimension_count": c.headDim,
                            "tokenizer.ggml.model": "llama"]) { $1 }
            required += ["tokenizer.ggml.scores", "tokenizer.ggml.bos_token_id"]
        }
        let expected = refs.appendingPathComponent("expected.json")
        try JSONSerialization.data(withJSONObject: ["metadata": metadata, "required_keys": required, "tensors": tensors])
            .write(to: expected)

        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let python = root.appendingPathComponent(".venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: python.path) else {
            XCTFail("\(python.path) is missing: run tools/setup.sh, which installs the gguf package there")
            return [:]
        }
        let process = Process()
        process.executableURL = python
        process.arguments = [root.appendingPathComponent("tools/gguf_check.py").path, gguf, expected.path]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: output, as: UTF8.self)
        XCTAssertEqual(process.terminationStatus, 0, "\(label): \(text) \(String(decoding: errors, as: UTF8.self))")
        let report = (try? JSONSerialization.jsonObject(with: output) as? [String: Any]) ?? [:]
        XCTAssertEqual(report["tensors"] as? Int, tensors.count, text)
        return report
    }

    func testEveryTensorOfA4BitExportDequantizesExactlyInTheGGUFPackage() throws {
        // Every weight but the int8 embedding (Q8_0, within its bound) is exact.
        let report = try check(try bundle("wint4-all"), mode: nil, label: "wint4-all")
        XCTAssertEqual(report["exact"] as? Int, (report["tensors"] as? Int ?? 0) - 1)
        XCTAssertEqual(report["within_bound"] as? Int, 1)
    }

    /// Asymmetric int4 becomes Q4_1 and bf16 stays BF16, both exactly.
    func testAsymmetricInt4AndBF16DequantizeExactlyInTheGGUFPackage() throws {
        let asymmetric = try profile("asym-bf16", ["embeddings": "bf16", "attention": "bf16", "dense_mlp": "int4g32a",
                                                   "shared_experts": "int4g32", "routed_experts": "int4g32a", "lm_head": "bf16"])
        let b = try bundle(asymmetric)
        XCTAssertEqual(Set(b.manifest.tensors.map(\.format)), [.bf16, .int4g32a, .int4g32, .f32])
        let report = try check(b, mode: nil, label: "asym-bf16")
        XCTAssertEqual(report["exact"] as? Int, report["tensors"] as? Int)
    }

    func testInt8TensorsStayWithinTheirBoundInTheGGUFPackage() throws {
        let report = try check(try bundle("wint4"), mode: nil, label: "wint4")
        XCTAssertGreaterThan(report["within_bound"] as? Int ?? 0, 0)
        XCTAssertLessThanOrEqual(report["worst_relative_error"] as? Double ?? 1, 1.0 / 2048)
    }

    func testPrunedBundlesExportInBothModes() throws {
        let b = try bundle("wint4-prune25", prune: KeepEvenExperts())
        XCTAssertEqual(b.keptExperts(layer: 1), Array(stride(from: 0, to: 16, by: 2)))
        _ = try check(b, mode: .drop, label: "drop")
        _ = try check(b, mode: .mask, label: "mask")
        // The default is the smaller file: every layer keeps 8 experts, so they are dropped.
        let path = dir.appendingPathComponent("default.gguf").path
        let report = try GGUFExporter.export(bundle: b, to: path)
        XCTAssertTrue(report.text.contains("dropped: 8 experts per layer"), report.text)
        let sizes = try ["default", "drop", "mask"].map {
            try XCTUnwrap(FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent("\($0).gguf").path)[.size] as? Int)
        }
        XCTAssertEqual(sizes[0], sizes[1])
        XCTAssertLessThan(sizes[1], sizes[2])
    }

    func testQwen3MoEAndMixtralExportsDequantizeExactlyInTheGGUFPackage() throws {
        for family in ["qwen3", "mixtral"] {
            let checkpoint = try synthesized(family)
            for profile in ["f32", "wint4-all"] {
                let report = try check(try bundle(profile, checkpoint: checkpoint), mode: nil, label: "\(family)-\(profile)")
                // The int8 embeddings and lm_head of wint4-all are within their bound, the rest exact.
                XCTAssertEqual((report["exact"] as? Int ?? 0) + (report["within_bound"] as? Int ?? 0), report["tensors"] as? Int, "\(family) \(profile)")
                if profile == "f32" { XCTAssertEqual(report["exact"] as? Int, report["tensors"] as? Int, family) }
            }
        }
    }

    func testFamiliesLlamaCppCannotHoldAreRefused() throws {
        // qwen3_moe_basic has a dense first layer (mlp_only_layers); mixtral_window_bf16 a sliding window.
        for (fixture, words) in [("qwen3_moe_basic", "every layer to be MoE"), ("mixtral_window_bf16", "sliding window")] {
            let b = try bundle("f32", checkpoint: Fixtures.checkpoint(fixture))
            let out = dir.appendingPathComponent("\(fixture).gguf").path
            XCTAssertThrowsError(try GGUFExporter.export(bundle: b, to: out)) { XCTAssertTrue("\($0)".contains(words), "\($0)") }
            XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        }
    }
}
