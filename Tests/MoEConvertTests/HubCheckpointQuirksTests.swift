import Foundation
import MoEFormat
import MoERuntime
import MoETestSupport
@testable import MoEConvert
import XCTest

/// What real hub checkpoints carry beyond transformers' own `save_pretrained` output: MTP heads,
/// a stored head of a tied model, a dropped correction bias. Each variant is the moe_basic
/// fixture rewritten, so the weights that matter are transformers' own.
final class HubCheckpointQuirksTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws { directory = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    /// moe_basic with tensors added (name → bf16 values and shape) and removed.
    private func variant(_ name: String, adding extra: [(String, [Int], [Float])] = [], removing: Set<String> = [],
                         copyTensor: [String: String] = [:]) throws -> URL {
        let source = Fixtures.checkpoint("moe_basic")
        let out = directory.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: source.appendingPathComponent("config.json"), to: out.appendingPathComponent("config.json"))
        let checkpoint = try Checkpoint(directory: source)
        var entries: [SafeTensorsWriter.Entry] = []
        var data: [String: [UInt8]] = [:]
        for name in checkpoint.tensorNames where !removing.contains(name) {
            let info = try checkpoint.info(name)
            entries.append(.init(name: name, dtype: info.dtype, shape: info.shape))
            data[name] = Array(try checkpoint.rawBytes(name))
        }
        for (name, from) in copyTensor {
            let info = try checkpoint.info(from)
            entries.append(.init(name: name, dtype: info.dtype, shape: info.shape))
            data[name] = Array(try checkpoint.rawBytes(from))
        }
        for (name, shape, values) in extra {
            entries.append(.init(name: name, dtype: .bf16, shape: shape))
            data[name] = values.flatMap { v -> [UInt8] in
                let bits = UInt16(v.bitPattern >> 16)
                return [UInt8(bits & 0xff), UInt8(bits >> 8)]
            }
        }
        let writer = try SafeTensorsWriter(url: out.appendingPathComponent("model.safetensors"), entries: entries)
        for entry in entries { try data[entry.name]!.withUnsafeBytes { try writer.write(entry.name, bytes: $0) } }
        try writer.close()
        return out
    }

    private func logits(_ path: URL) throws -> [Float] {
        try ModelLoader.model(at: path.path).logits(Fixtures.sequences("moe_basic")[0])
    }

    func testMTPTensorsAndAStoredTiedHeadLoadAndAreCarried() throws {
        let hidden = 48
        let mtp: [(String, [Int], [Float])] = [
            ("model.mtp_block.0.self_attn.q_proj.weight", [hidden, hidden], (0..<(hidden * hidden)).map { Float($0 % 7) - 3 }),
            ("model.mtp_emb_norm.0.weight", [hidden], [Float](repeating: 1, count: hidden)),
            ("model.mtp_linear_proj.0.weight", [hidden, 2 * hidden], (0..<(2 * hidden * hidden)).map { Float($0 % 5) * 0.5 }),
        ]
        let path = try variant("hub", adding: mtp, copyTensor: ["lm_head.weight": "model.embed_tokens.weight"])
        // Same weights that matter, same logits as transformers' own checkpoint.
        XCTAssertEqual(try logits(path), try logits(Fixtures.checkpoint("moe_basic")))
        let summary = try CheckpointSummary(checkpoint: Checkpoint(directory: path))
        XCTAssertEqual(summary.mtpTensors, 3)
        XCTAssertTrue(summary.text.contains("3 multi-token-prediction tensors"), summary.text)
        XCTAssertTrue(summary.notes.contains { $0.contains("lm_head.weight is stored but unused") }, "\(summary.notes)")

        let bundle = directory.appendingPathComponent("hub.mpk")
        try Converter.convert(checkpoint: path.path, output: bundle.path, options: ConvertOptions(profile: Profile.load("wint8")))
        let file = try BundleFile(path: bundle.path)
        let source = try Checkpoint(directory: path)
        for (name, _, _) in mtp {
            let tensor = try XCTUnwrap(file.tensor(name), name)
            XCTAssertEqual(tensor.tensorClass, .mtp)
            let stored = try file.payload(tensor.payload, what: name)
            let raw = try source.rawBytes(name)
            if tensor.shape.count == 2 {
                XCTAssertEqual(tensor.format, .bf16)
                XCTAssertEqual(Array(stored.buffer), Array(raw), "\(name) changed on the way")
            } else {
                XCTAssertEqual(tensor.format, .f32)
                let values = (0..<tensor.shape[0]).map { stored.buffer.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
                XCTAssertEqual(values, try source.floats(name))
            }
        }
        XCTAssertNil(file.tensor("lm_head.weight"), "the unused head is not stored")
        XCTAssertNoThrow(try ModelLoader.model(at: bundle.path).logits([3, 4, 5]))
    }

    func testAMissingCorrectionBiasRoutesWithZero() throws {
        let config = try ModelConfig(jsonData: Data(contentsOf: Fixtures.checkpoint("moe_basic").appendingPathComponent("config.json")))
        let biases = Set(config.moeLayers.map { "model.layers.\($0).mlp.moe_statics.e_score_correction_bias" })
        let without = try variant("nobias", removing: biases)
        let zeros = try variant("zerobias", adding: biases.map { ($0, [1, config.moeNumExperts], [Float](repeating: 0, count: config.moeNumExperts)) },
                                removing: biases)
        XCTAssertEqual(try logits(without), try logits(zeros))
        XCTAssertNotEqual(try logits(without), try logits(Fixtures.checkpoint("moe_basic")), "the fixture's bias should matter")
        XCTAssertTrue(try CheckpointSummary(checkpoint: Checkpoint(directory: without)).notes.contains { $0.contains("zero bias") })
        let bundle = directory.appendingPathComponent("nobias.mpk")
        try Converter.convert(checkpoint: without.path, output: bundle.path, options: ConvertOptions(profile: Profile.load("f32")))
        XCTAssertEqual(try ModelLoader.model(at: bundle.path).logits(Fixtures.sequences("moe_basic")[0]), try logits(without))
    }
}
