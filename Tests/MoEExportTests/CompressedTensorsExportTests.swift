import Foundation
import MoEConvert
@testable import MoEExport
import MoEFormat
import MoEKernels
import MoERuntime
import MoETestSupport
import XCTest

/// The compressed-tensors export. Its packing is checked against golden outputs of the
/// `compressed-tensors` package (tools/make_export_fixtures.py); whole exports of the built-in
/// model are unpacked by that rule and must equal moepack's own decoding of every tensor.
final class CompressedTensorsExportTests: ExportTestCase {
    func export(_ b: BundleFile, _ name: String, dtype: DType = .f32, pruned: PrunedExpertsMode? = nil,
                dequantize: Bool = false, pack: Bool = true) throws -> (URL, CompressedTensorsReport) {
        var o = CompressedTensorsOptions()
        o.dtype = dtype
        o.pruned = pruned
        o.dequantizeUnsupported = dequantize
        o.packQuantized = pack
        let out = dir.appendingPathComponent(name)
        return (out, try CompressedTensorsExporter.export(bundle: b, to: out.path, options: o))
    }

    /// The tensors of a safetensors file: dtype, shape and bytes.
    func tensors(_ folder: URL) throws -> [String: (dtype: String, shape: [Int], bytes: Data)] {
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("model.safetensors.index.json"))) as! [String: Any]
        let map = index["weight_map"] as! [String: String]
        var out: [String: (String, [Int], Data)] = [:]
        for file in Set(map.values) {
            let data = try Data(contentsOf: folder.appendingPathComponent(file))
            let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
            let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
            for (name, value) in header where name != "__metadata__" {
                let v = value as! [String: Any], offsets = v["data_offsets"] as! [Int]
                out[name] = (v["dtype"] as! String, v["shape"] as! [Int], data.subdata(in: (8 + n + offsets[0])..<(8 + n + offsets[1])))
                XCTAssertEqual(map[name], file, name)
            }
        }
        XCTAssertEqual(Set(out.keys), Set(map.keys))
        return out
    }

    func floats(_ d: Data) -> [Float] { d.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) } }

    /// compressed-tensors' rule: code j of a row at bits·j of its little-endian int32 words, minus 2^(bits−1).
    func unpack(_ d: Data, rows: Int, cols: Int, bits: Int) -> [Int] {
        let words = d.withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }, per = words.count / rows
        return (0..<(rows * cols)).map { i in
            let r = i / cols, j = i % cols, bit = j * bits
            return Int((words[r * per + bit / 32] >> UInt32(bit % 32)) & UInt32((1 << bits) - 1)) - (1 << (bits - 1))
        }
    }

    /// A linear layer's weight from the export: codes × scales.
    func weight(_ all: [String: (dtype: String, shape: [Int], bytes: Data)], _ module: String, bits: Int) throws -> [Float] {
        let raw: [Int64] = try XCTUnwrap(all[module + ".weight_shape"]).bytes.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
        let shape = raw.map { Int($0) }
        let (rows, cols) = (shape[0], shape[1])
        let codes = unpack(try XCTUnwrap(all[module + ".weight_packed"]).bytes, rows: rows, cols: cols, bits: bits)
        let scale = try XCTUnwrap(all[module + ".weight_scale"])
        let perRow = scale.shape[1], scales = floats(scale.bytes), group = cols / perRow
        var out = [Float](repeating: 0, count: rows * cols)
        for i in out.indices {
            let s: Float = scales[(i / cols) * perRow + (i % cols) / group]
            out[i] = Float(codes[i]) * s
        }
        return out
    }

    func testPackingEqualsTheCompressedTensorsPackage() throws {
        let url = Fixtures.root.appendingPathComponent("export/compressed_tensors_pack.json")
        let fixture = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let cases = fixture["cases"] as! [[String: Any]]
        XCTAssertEqual(cases.count, 3)
        for c in cases {
            let name = c["name"] as! String, rows = c["rows"] as! Int, cols = c["cols"] as! Int, bits = c["bits"] as! Int
            let group = c["group"] as! Int
            let codes = (c["codes"] as! [Int]).map { Int8($0) }, scales = (c["scales"] as! [Double]).map { Float($0) }
            let scheme: PackedScheme = group > 0 ? .int4(group: group) : .int8Channel
            XCTAssertEqual(scheme.bits, bits, name)
            let mine = SymmetricCodes(codes: codes, scales: scales, scalesPerRow: group > 0 ? cols / group : 1)
            let packed = mine.packed(rows: rows, cols: cols, bits: bits)
            let words = packed.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
            XCTAssertEqual(words, (c["weight_packed"] as! [Int]).map { Int32(truncatingIfNeeded: $0) }, name)
            XCTAssertEqual([rows, (cols * bits + 31) / 32], c["packed_shape"] as! [Int], name)
            // The package decodes code × scale; in f32 that is exact.
            let back = (c["decompressed_f32"] as! [Double]).map { Float($0) }
            let per = group > 0 ? group : cols
            var mineDecoded = [Float](repeating: 0, count: rows * cols)
            for i in mineDecoded.indices {
                let s: Float = scales[(i / cols) * (cols / per) + (i % cols) / per]
                mineDecoded[i] = Float(codes[i]) * s
            }
            XCTAssertEqual(mineDecoded, back, name)
            // With float16 scales (a float16 export) the package decodes code × scale rounded once to float16.
            let back16 = (c["decompressed_f16_scales"] as! [Double]).map { Float($0) }
            XCTAssertEqual(mineDecoded.map { Float(Float16($0)) }, back16, name)
            XCTAssertEqual(unpack(Data(packed), rows: rows, cols: cols, bits: bits), codes.map(Int.init), name)
        }
    }

    func testEveryExportedWeightDecodesToWhatMoepackDecodes() throws {
        for profile in ["wint4", "wint3", "wint4-all"] {
            let b = try bundle(Profile.load(profile))
            let (out, report) = try export(b, profile)
            XCTAssertTrue(report.exact, report.text)
            let all = try tensors(out)
            var linears = 0
            for t in b.manifest.tensors {
                let module = String(t.name.dropLast(".weight".count))
                if all[module + ".weight_packed"] != nil {
                    linears += 1
                    let bits = t.format == .int8 ? 8 : 4
                    XCTAssertEqual(try weight(all, module, bits: bits), try decoded(b, t.name), "\(profile) \(t.name)")
                } else {
                    let stored = try XCTUnwrap(all[t.name], "\(profile) \(t.name)")
                    XCTAssertEqual(stored.dtype, "F32")
                    XCTAssertEqual(stored.shape, t.shape)
                    XCTAssertEqual(floats(stored.bytes), try decoded(b, t.name), "\(profile) \(t.name)")
                }
            }
            XCTAssertEqual(linears, 4 * 4 + 3 + 3 * (16 * 3 + 3), profile)
        }
    }

    func testConfigCarriesTheQuantizationBlockAndTheFolderTheTokenizer() throws {
        let b = try bundle(Profile.load("wint4"))
        let (out, report) = try export(b, "ct", dtype: .f16)
        XCTAssertTrue(report.text.contains("144 int4 group 32"), report.text)  // 160 columns: q4g64 falls back to q4g32
        XCTAssertTrue(report.text.contains("28 int8 per channel"), report.text)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as! [String: Any]
        XCTAssertEqual(config["torch_dtype"] as? String, "float16")
        XCTAssertEqual(config["architectures"] as? [String], ["Ernie4_5_MoeForCausalLM"])
        let q = try XCTUnwrap(config["quantization_config"] as? [String: Any])
        XCTAssertEqual(q["quant_method"] as? String, "compressed-tensors")
        XCTAssertEqual(q["format"] as? String, "pack-quantized")
        XCTAssertEqual(q["quantization_status"] as? String, "compressed")
        XCTAssertEqual(q["ignore"] as? [String], (1...3).map { "model.layers.\($0).mlp.gate" })
        let groups = try XCTUnwrap(q["config_groups"] as? [String: [String: Any]])
        XCTAssertEqual(groups.count, 2)
        let experts = try XCTUnwrap(groups.values.first { ($0["targets"] as? [String])?.first?.hasPrefix("re:") == true })
        XCTAssertEqual(experts["targets"] as? [String], (1...3).map { #"re:^model\.layers\.\#($0)\.mlp\.experts\.\d+\..*$"# })
        let w = try XCTUnwrap(experts["weights"] as? [String: Any])
        XCTAssertEqual(w["num_bits"] as? Int, 4)
        XCTAssertEqual(w["group_size"] as? Int, 32)
        XCTAssertEqual(w["strategy"] as? String, "group")
        XCTAssertEqual(w["symmetric"] as? Bool, true)
        let regex = try NSRegularExpression(pattern: String((experts["targets"] as! [String])[0].dropFirst(3)))
        for name in ["model.layers.1.mlp.experts.0.gate_proj", "model.layers.1.mlp.experts.15.down_proj"] {
            XCTAssertNotNil(regex.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)), name)
        }
        for name in ["model.layers.1.mlp.shared_experts.gate_proj", "model.layers.11.mlp.experts.0.up_proj"] {
            XCTAssertNil(regex.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)), name)
        }
        let dense = try XCTUnwrap(groups.values.first { ($0["targets"] as? [String])?.first?.hasPrefix("re:") == false })
        XCTAssertEqual((dense["targets"] as? [String])?.count, 28)
        XCTAssertEqual((dense["weights"] as? [String: Any])?["strategy"] as? String, "channel")
        let all = try tensors(out)
        XCTAssertEqual(all["model.layers.1.mlp.experts.3.up_proj.weight_scale"]?.dtype, "F16")
        XCTAssertEqual(all["model.layers.1.mlp.experts.3.up_proj.weight_scale"]?.shape, [128, 160 / 32])
        XCTAssertEqual(all["model.layers.1.mlp.experts.3.up_proj.weight_packed"]?.shape, [128, 160 / 8])
        XCTAssertEqual(all["model.embed_tokens.weight"]?.dtype, "F16")
        XCTAssertEqual(all["model.norm.weight"]?.dtype, "F32")
        for file in ["tokenizer.model", "tokenizer_config.json"] {
            XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent(file)), try b.fileData(named: file), file)
        }
        // f16 scales are the bundle's own; int8 row scales and f32 embeddings are rounded (reported).
        XCTAssertGreaterThan(report.maxScaleRounding, 0)
        XCTAssertLessThanOrEqual(report.maxScaleRounding, 1.0 / 2048)
    }

    func testPrunedExpertsAreDroppedOrMasked() throws {
        let b = try bundle(Profile.load("wint4-prune25"), prune: KeepEvenExperts())
        let (drop, dropReport) = try export(b, "drop")
        XCTAssertTrue(dropReport.text.contains("dropped: 8 experts per layer"), dropReport.text)
        let dropConfig = try JSONSerialization.jsonObject(with: Data(contentsOf: drop.appendingPathComponent("config.json"))) as! [String: Any]
        XCTAssertEqual(dropConfig["moe_num_experts"] as? Int, 8)
        let dropped = try tensors(drop)
        let router = try decoded(b, "model.layers.2.mlp.gate.weight")
        XCTAssertEqual(dropped["model.layers.2.mlp.gate.weight"]?.shape, [8, 160])
        XCTAssertEqual(floats(dropped["model.layers.2.mlp.gate.weight"]!.bytes), (0..<8).flatMap { router[(2 * $0 * 160)..<((2 * $0 + 1) * 160)] })
        let bias = try decoded(b, "model.layers.2.mlp.moe_statics.e_score_correction_bias")
        XCTAssertEqual(floats(dropped["model.layers.2.mlp.moe_statics.e_score_correction_bias"]!.bytes), (0..<8).map { bias[2 * $0] })
        // Expert 3 of the export is the bundle's expert 6.
        XCTAssertEqual(try weight(dropped, "model.layers.2.mlp.experts.3.down_proj", bits: 4),
                       try decoded(b, "model.layers.2.mlp.experts.6.down_proj.weight"))
        XCTAssertNil(dropped["model.layers.2.mlp.experts.8.down_proj.weight_packed"])

        let (mask, maskReport) = try export(b, "mask", pruned: .mask)
        XCTAssertTrue(maskReport.text.contains("zeros with correction bias"), maskReport.text)
        let masked = try tensors(mask)
        let maskBias = floats(masked["model.layers.2.mlp.moe_statics.e_score_correction_bias"]!.bytes)
        XCTAssertEqual(maskBias, (0..<16).map { $0 % 2 == 0 ? bias[$0] : GGUFExporter.prunedBias })
        XCTAssertEqual(try weight(masked, "model.layers.2.mlp.experts.7.up_proj", bits: 4), [Float](repeating: 0, count: 128 * 160))
        XCTAssertEqual(try weight(masked, "model.layers.2.mlp.experts.6.up_proj", bits: 4),
                       try decoded(b, "model.layers.2.mlp.experts.6.up_proj.weight"))
        let maskConfig = try JSONSerialization.jsonObject(with: Data(contentsOf: mask.appendingPathComponent("config.json"))) as! [String: Any]
        XCTAssertEqual(maskConfig["moe_num_experts"] as? Int, 16)
    }

    func testFamiliesWithoutACorrectionBiasDropAndRefuseMask() throws {
        let b = try bundle(Profile.load("wint4-prune25"), checkpoint: Fixtures.checkpoint("qwen3_moe_basic"), prune: KeepEvenExperts())
        XCTAssertThrowsError(try export(b, "mask", pruned: .mask)) { XCTAssertTrue("\($0)".contains("--pruned drop"), "\($0)") }
        let (out, report) = try export(b, "drop")
        XCTAssertTrue(report.text.contains("routing exact"), report.text)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as! [String: Any]
        // The fixture spells the count num_local_experts (transformers reads both spellings).
        XCTAssertEqual(config["num_local_experts"] as? Int, b.config.moeNumExperts / 2)
        XCTAssertNil(config["num_experts"])
        XCTAssertEqual(config["architectures"] as? [String], ["Qwen3MoeForCausalLM"])
        XCTAssertNotNil(try tensors(out)["model.layers.1.self_attn.q_norm.weight"])
    }

    func testFormatsPackQuantizedCannotHoldAreRefusedUnlessDequantized() throws {
        let nl4 = try profile("nl4-experts", ["embeddings": "int8", "attention": "int8", "dense_mlp": "int8",
                                              "shared_experts": "int8", "routed_experts": "nl4g32", "lm_head": "int8"])
        let b = try bundle(nl4)
        XCTAssertThrowsError(try export(b, "refused")) { error in
            XCTAssertTrue("\(error)".contains("nl4g32"), "\(error)")
            XCTAssertTrue("\(error)".contains("--dequantize-unsupported"), "\(error)")
        }
        let (out, report) = try export(b, "dequantized", dequantize: true)
        XCTAssertTrue(report.text.contains("dequantized to float32: 144 nl4g32"), report.text)
        let all = try tensors(out)
        XCTAssertEqual(floats(try XCTUnwrap(all["model.layers.3.mlp.experts.5.gate_proj.weight"]).bytes),
                       try decoded(b, "model.layers.3.mlp.experts.5.gate_proj.weight"))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains("partial") }
        XCTAssertEqual(leftovers, [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("refused").path))
    }

    func testAnExistingOutputNeedsForceAndIsReplacedWhole() throws {
        let b = try bundle(Profile.load("wint4-all"))
        let out = dir.appendingPathComponent("x")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try Data("old".utf8).write(to: out.appendingPathComponent("stale.txt"))
        XCTAssertThrowsError(try export(b, "x")) { XCTAssertTrue("\($0)".contains("--force"), "\($0)") }
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("stale.txt").path))
        var o = CompressedTensorsOptions()
        o.force = true
        _ = try CompressedTensorsExporter.export(bundle: b, to: out.path, options: o)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("stale.txt").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("config.json").path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }, [])
    }

    func testTheSafetensorsTargetIsACheckpointMoepackReadsWithTheBundlesValues() throws {
        let b = try bundle(Profile.load("wint4"))
        let (out, report) = try export(b, "deq", pack: false)
        XCTAssertTrue(report.exact, report.text)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as! [String: Any]
        XCTAssertNil(config["quantization_config"])
        let checkpoint = try Checkpoint(directory: out)
        XCTAssertEqual(checkpoint.config, b.config)
        let all = try tensors(out)
        XCTAssertEqual(floats(all["model.layers.2.mlp.experts.9.up_proj.weight"]!.bytes), try decoded(b, "model.layers.2.mlp.experts.9.up_proj.weight"))
        XCTAssertEqual(floats(all["model.layers.0.self_attn.k_proj.weight"]!.bytes), try decoded(b, "model.layers.0.self_attn.k_proj.weight"))
    }
}
