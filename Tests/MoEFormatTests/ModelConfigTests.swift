import Foundation
import MoEFormat
import MoETestSupport
import XCTest

final class ModelConfigTests: XCTestCase {
    private func config(_ name: String) throws -> ModelConfig {
        try ModelConfig(jsonData: Data(contentsOf: Fixtures.checkpoint(name).appendingPathComponent("config.json")))
    }

    func testHubStyleConfig() throws {
        let c = try config("moe_shared2_bias")
        XCTAssertEqual(c.architecture, .ernie45MoE)
        XCTAssertEqual(c.headDim, 16)               // explicit, not hidden / heads (32 / 4)
        XCTAssertEqual(c.ropeTheta, 10000)
        XCTAssertEqual(c.moeNumSharedExperts, 2)
        XCTAssertTrue(c.attentionBias && c.mlpBias && c.hasLMHeadBias)
        XCTAssertFalse(c.tieWordEmbeddings)
        XCTAssertEqual(c.moeLayers, [1, 2])
    }

    func testTransformersFiveStyleConfig() throws {
        // rope_parameters instead of rope_theta, no head_dim, interval 2 ending before the last layer.
        let c = try config("moe_noshared_interval2")
        XCTAssertEqual(c.headDim, c.hiddenSize / c.numAttentionHeads)
        XCTAssertEqual(c.moeLayers, [1, 3])
        XCTAssertEqual(c.moeNumSharedExperts, 0)
    }

    func testDenseConfig() throws {
        let c = try config("dense")
        XCTAssertEqual(c.architecture, .ernie45)
        XCTAssertEqual(c.moeLayers, [])
        XCTAssertFalse(c.hasLMHeadBias)
    }

    func testDefaultsFollowTransformers() throws {
        let c = try ModelConfig(json: ["architectures": ["Ernie4_5_MoeForCausalLM"]])
        XCTAssertEqual(c.hiddenSize, 2560)
        XCTAssertEqual(c.headDim, 128)
        XCTAssertEqual(c.moeLayers, Array(1...27))
        XCTAssertEqual(c.ropeTheta, 500000)
        let dense = try ModelConfig(json: ["architectures": ["Ernie4_5ForCausalLM"]])
        XCTAssertEqual(dense.headDim, 128)
        XCTAssertEqual(dense.numHiddenLayers, 18)
    }

    func testUnknownArchitectureNamesSupportedOnes() {
        XCTAssertThrowsError(try ModelConfig(json: ["architectures": ["LlamaForCausalLM"]])) { error in
            XCTAssertEqual((error as? FormatError)?.message,
                           "unsupported architecture LlamaForCausalLM (supported: Ernie4_5_MoeForCausalLM, Ernie4_5ForCausalLM, Qwen3MoeForCausalLM, MixtralForCausalLM)")
        }
    }

    func testBadFieldTypes() {
        XCTAssertThrowsError(try ModelConfig(json: ["architectures": ["Ernie4_5ForCausalLM"], "hidden_size": "big"])) {
            XCTAssertEqual(($0 as? FormatError)?.message, "config.json: hidden_size is not an integer")
        }
        XCTAssertThrowsError(try ModelConfig(json: ["architectures": ["Ernie4_5ForCausalLM"], "num_key_value_heads": 3])) {
            XCTAssertTrue(($0 as? FormatError)?.message.contains("not a multiple") ?? false)
        }
        XCTAssertThrowsError(try ModelConfig(jsonData: Data("[]".utf8))) {
            XCTAssertEqual(($0 as? FormatError)?.message, "config.json is not a JSON object")
        }
    }

    private func assertRefused(_ json: [String: Any], _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ModelConfig(json: json), file: file, line: line) { error in
            let message = (error as? FormatError)?.message ?? "\(error)"
            XCTAssertTrue(message.contains(expected), "\"\(message)\" does not mention \"\(expected)\"", file: file, line: line)
        }
    }

    /// Sizes far beyond any real model are refused at once, before anything is built from them.
    func testAbsurdSizesAreRefusedAtOnce() {
        let moe: [String: Any] = ["architectures": ["Ernie4_5_MoeForCausalLM"]]
        for (key, value) in [("num_hidden_layers", 1 << 31), ("moe_num_experts", (1 << 31) - 1), ("num_hidden_layers", 1_000_000),
                             ("vocab_size", 1 << 40), ("hidden_size", 1 << 20), ("moe_intermediate_size", 1 << 30)] {
            assertRefused(moe.merging([key: value]) { _, b in b }, "\(key) = \(value) is out of range")
        }
    }

    /// A config whose sizes are plausible but describe far more tensors than a checkpoint holds
    /// is refused from the counts, without building the layout.
    func testConfigDescribingMoreTensorsThanTheFileHoldsIsRefused() throws {
        let directory = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = Fixtures.checkpoint("moe_basic")
        for name in ["model.safetensors"] {
            try FileManager.default.copyItem(at: source.appendingPathComponent(name), to: directory.appendingPathComponent(name))
        }
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("config.json"))) as! [String: Any]
        json["num_hidden_layers"] = ModelConfig.maxLayers
        json["moe_num_experts"] = ModelConfig.maxExperts
        json["moe_layer_end_index"] = -1
        try JSONSerialization.data(withJSONObject: json).write(to: directory.appendingPathComponent("config.json"))
        let expected = ModelLayout.tensorCount(config: try ModelConfig(json: json))
        XCTAssertGreaterThan(expected, 10_000_000)
        let start = Date()
        XCTAssertThrowsError(try Checkpoint(directory: directory)) { error in
            XCTAssertTrue("\(error)".contains("describes \(expected) tensors"), "\(error)")
            XCTAssertTrue("\(error)".contains("but the file holds only"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 2)
        XCTAssertEqual(ModelLayout.tensorCount(config: try config("moe_basic")), ModelLayout(config: try config("moe_basic")).tensors.count)
        XCTAssertEqual(ModelLayout.tensorCount(config: try config("moe_shared2_bias")),
                       ModelLayout(config: try config("moe_shared2_bias")).tensors.count)
        XCTAssertEqual(ModelLayout.tensorCount(config: try config("dense")), ModelLayout(config: try config("dense")).tensors.count)
    }

    /// Fields that change transformers' output and that moepack does not implement are refused by name.
    func testUnimplementedFieldsAreRefusedByName() {
        let moe: [String: Any] = ["architectures": ["Ernie4_5_MoeForCausalLM"], "model_type": "ernie4_5_moe"]
        func with(_ key: String, _ value: Any) -> [String: Any] { moe.merging([key: value]) { _, b in b } }
        assertRefused(with("rope_scaling", ["type": "yarn", "factor": 4]), "rope_scaling")
        assertRefused(with("sliding_window", 4096), "sliding_window")
        assertRefused(with("quantization_config", ["quant_method": "fp8"]), "quantization_config")
        assertRefused(with("moe_gate", "top2_fused"), "moe_gate top2_fused")
        assertRefused(with("moe_gate_act", "sigmoid"), "moe_gate_act sigmoid")
        assertRefused(with("scale_qk_coeff", 2.0), "scale_qk_coeff")
        assertRefused(with("use_rmsnorm", false), "use_rmsnorm")
        assertRefused(with("model_type", "llama"), "model_type llama does not match")
        // The values real checkpoints carry, and explicit nulls, are accepted.
        XCTAssertNoThrow(try ModelConfig(json: moe.merging(["moe_gate": "topk", "rope_scaling": NSNull(), "sliding_window": NSNull(),
                                                            "scale_qk_coeff": 1.0, "use_rmsnorm": true]) { _, b in b }))
    }

    /// The first release's spelling of the dense class, and an absent shared-experts count meaning none.
    func testReleaseSpellingsAndDefaults() throws {
        XCTAssertEqual(try ModelConfig(json: ["architectures": ["Ernie4_5_ForCausalLM"], "model_type": "ernie4_5"]).architecture, .ernie45)
        XCTAssertEqual(try ModelConfig(json: ["architectures": ["Ernie4_5_MoeForCausalLM"]]).moeNumSharedExperts, 0)
    }

    /// A -Paddle repository's tensors are named, fused and transposed differently: refused with
    /// the way out, not as hundreds of missing tensors.
    func testPaddleCheckpointsAreRefusedWithTheWayOut() throws {
        let layout = ModelLayout(config: try config("moe_basic"))
        let names = ["ernie.embed_tokens.weight", "ernie.layers.0.self_attn.qkv_proj.weight", "lm_head.weight"]
        XCTAssertThrowsError(try layout.validate(names: names) { _ in [1] }) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("PaddlePaddle checkpoint") && message.contains("-PT"), message)
        }
        let directory = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.copyItem(at: Fixtures.checkpoint("moe_basic").appendingPathComponent("config.json"),
                                         to: directory.appendingPathComponent("config.json"))
        try Data([0]).write(to: directory.appendingPathComponent("model_state.pdparams"))
        XCTAssertThrowsError(try Checkpoint(directory: directory)) { error in
            XCTAssertTrue("\(error)".contains("PaddlePaddle weights (.pdparams)"), "\(error)")
        }
    }

    func testLayoutReportsMissingAndUnexpectedTensors() throws {
        let c = try config("moe_basic")
        let layout = ModelLayout(config: c)
        var names = layout.tensors.map(\.name)
        names.removeAll { $0 == "model.layers.1.mlp.experts.3.up_proj.weight" }
        names.append("model.layers.9.extra.weight")
        names.append("model.mtp_block.0.weight") // multi-token prediction heads are skipped
        XCTAssertThrowsError(try layout.validate(names: names) { layout.spec($0)?.shape ?? [1] }) { error in
            XCTAssertEqual((error as? FormatError)?.message,
                           "missing tensors: model.layers.1.mlp.experts.3.up_proj.weight; unexpected tensors: model.layers.9.extra.weight")
        }
    }

    func testNpyRoundTrip() throws {
        let values: [Float] = (0..<12).map { Float($0) * 0.5 - 2 }
        let data = Npy.encode(values, shape: [3, 4])
        XCTAssertEqual((data.count - 48) % 64, 0) // header padded to 64 bytes, then 48 bytes of data
        let decoded = try Npy.decode(data)
        XCTAssertEqual(decoded.shape, [3, 4])
        XCTAssertEqual(decoded.values, values)
    }
}
