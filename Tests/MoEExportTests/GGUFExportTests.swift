import Foundation
import MoEConvert
import MoEExport
import MoEFormat
import MoEKernels
import MoERuntime
import MoETestSupport
import XCTest

/// The GGUF export of the built-in model, read back with moepack's own GGUF reader: the keys
/// llama.cpp's ernie4_5-moe loader needs, the tensor table, and every 4-bit weight decoding to
/// exactly what moepack decodes (Q4_0 blocks are q4g32 blocks byte for byte, so the kernels'
/// decoder reads both).
final class GGUFExportTests: ExportTestCase {
    func decode(_ format: WeightFormat, _ bytes: UnsafeRawBufferPointer, rows: Int, cols: Int) -> [Float] {
        var out = [Float](repeating: .nan, count: rows * cols)
        let rc = out.withUnsafeMutableBufferPointer { moe_dequantize(format.id, bytes.baseAddress, Int64(rows), Int64(cols), $0.baseAddress) }
        XCTAssertEqual(rc, 0)
        return out
    }

    func testBuiltInModelExportsWithLlamaCppNamesAndExactExperts() throws {
        let b = try bundle("wint4-all")
        let path = dir.appendingPathComponent("tiny.gguf").path
        let report = try GGUFExporter.export(bundle: b, to: path)
        let file = try Data(contentsOf: URL(fileURLWithPath: path))
        let g = try GGUFReader(data: file)
        XCTAssertEqual(g.version, 3)
        XCTAssertEqual(g.metadata["general.architecture"], .string("ernie4_5-moe"))
        let a = "ernie4_5-moe"
        let expected: [String: UInt32] = ["\(a).block_count": 4, "\(a).embedding_length": 160, "\(a).feed_forward_length": 384,
            "\(a).attention.head_count": 4, "\(a).attention.head_count_kv": 2, "\(a).attention.key_length": 40,
            "\(a).expert_count": 16, "\(a).expert_used_count": 2, "\(a).leading_dense_block_count": 1,
            "\(a).interleave_moe_layer_step": 1, "\(a).expert_feed_forward_length": 128, "\(a).expert_shared_count": 1,
            "\(a).expert_shared_feed_forward_length": 128, "\(a).context_length": 2048,
            "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2]
        for (key, value) in expected { XCTAssertEqual(g.metadata[key], .uint32(value), key) }
        XCTAssertEqual(g.metadata["tokenizer.ggml.model"], .string("llama"))
        XCTAssertEqual(g.metadata["\(a).rope.freq_base"], .float32(10000))
        guard case .byteStrings(let tokens)? = g.metadata["tokenizer.ggml.tokens"],
              case .float32s(let scores)? = g.metadata["tokenizer.ggml.scores"],
              case .int32s(let types)? = g.metadata["tokenizer.ggml.token_type"] else { return XCTFail("no vocabulary") }
        XCTAssertEqual(tokens.count, 3072)
        XCTAssertEqual(scores.count, 3072)
        XCTAssertEqual(types.count, 3072)
        XCTAssertEqual(String(decoding: tokens[1], as: UTF8.self), "<s>")
        // 4 layers × (2 norms + 4 attention) + dense MLP (3) + 3 MoE layers × (router, bias, 3 experts, 3 shared)
        // + embedding + final norm (tied head).
        XCTAssertEqual(g.tensors.count, 4 * 6 + 3 + 3 * 8 + 2)
        XCTAssertEqual(report.tensorCount, g.tensors.count)
        XCTAssertNil(g.tensor("output.weight"))
        let gate = try XCTUnwrap(g.tensor("blk.1.ffn_gate_exps.weight"))
        XCTAssertEqual(gate.info.dimensions, [160, 128, 16])
        XCTAssertEqual(try XCTUnwrap(g.tensor("blk.1.ffn_down_exps.weight")).info.dimensions, [128, 160, 16])
        XCTAssertEqual(try XCTUnwrap(g.tensor("blk.1.exp_probs_b.bias")).info.dimensions, [16])
        XCTAssertEqual(try XCTUnwrap(g.tensor("blk.0.ffn_gate.weight")).info.dimensions, [160, 384])
        // Every expert in expert order, decoded from the GGUF, equals moepack's decoding.
        for layer in 1...3 {
            for p in FeedForwardProjection.allCases {
                let t = try XCTUnwrap(g.tensor("blk.\(layer).ffn_\(p.rawValue)_exps.weight"))
                let (cols, rows) = (t.info.dimensions[0], t.info.dimensions[1])
                let per = t.byteCount / 16
                for e in 0..<16 {
                    let stored = try XCTUnwrap(b.tensor(b.config.names.expert(layer, e, p)))
                    let original = try b.payload(stored.payload, what: stored.name)
                    let mine = withExtendedLifetime(original) { decode(stored.format, original.buffer, rows: rows, cols: cols) }
                    let theirs: [Float] = file.withUnsafeBytes { all in
                        let slice = UnsafeRawBufferPointer(rebasing: all[(t.offset + e * per)..<(t.offset + (e + 1) * per)])
                        XCTAssertEqual(t.info.type, .q4_0)
                        return decode(.q4g32, slice, rows: rows, cols: cols)
                    }
                    XCTAssertEqual(mine, theirs, "layer \(layer) expert \(e) \(p)")
                }
            }
        }
    }

    func testAnExistingOutputNeedsForceAndAFailedExportLeavesNothing() throws {
        let b = try bundle("wint4-all")
        let path = dir.appendingPathComponent("x.gguf").path
        try Data("keep".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try GGUFExporter.export(bundle: b, to: path)) { error in
            XCTAssertTrue("\(error)".contains("--force"), "\(error)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), Data("keep".utf8))
        _ = try GGUFExporter.export(bundle: b, to: path, force: true)
        XCTAssertNoThrow(try GGUFReader(data: Data(contentsOf: URL(fileURLWithPath: path))))
        let missing = dir.appendingPathComponent("no/such/dir/x.gguf").path
        XCTAssertThrowsError(try GGUFExporter.export(bundle: b, to: missing))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains("partial") }
        XCTAssertEqual(leftovers, [])
    }

    func testPrunedExpertsAreZerosThatTheRouterNeverChooses() throws {
        let b = try bundle("wint4-prune25", prune: KeepEvenExperts())
        let path = dir.appendingPathComponent("p.gguf").path
        let report = try GGUFExporter.export(bundle: b, to: path, pruned: .mask)
        XCTAssertTrue(report.notes.contains { $0.contains("pruned experts") }, report.text)
        let file = try Data(contentsOf: URL(fileURLWithPath: path))
        let g = try GGUFReader(data: file)
        var prunedSeen = 0
        for layer in 1...3 {
            let kept = Set(try XCTUnwrap(b.keptExperts(layer: layer)))
            let bias = try XCTUnwrap(g.tensor("blk.\(layer).exp_probs_b.bias"))
            let values: [Float] = file.withUnsafeBytes { all in
                (0..<16).map { all.loadUnaligned(fromByteOffset: bias.offset + 4 * $0, as: Float.self) }
            }
            let up = try XCTUnwrap(g.tensor("blk.\(layer).ffn_up_exps.weight"))
            let per = up.byteCount / 16
            for e in 0..<16 {
                if kept.contains(e) {
                    XCTAssertGreaterThan(values[e], -1e6)
                } else {
                    prunedSeen += 1
                    XCTAssertEqual(values[e], GGUFExporter.prunedBias)
                    XCTAssertTrue(file[(up.offset + e * per)..<(up.offset + (e + 1) * per)].allSatisfy { $0 == 0 })
                }
            }
        }
        XCTAssertGreaterThan(prunedSeen, 0)
    }
}
