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
        XCTAssertTrue(c.useBias)
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
        XCTAssertEqual(c.moeLayerEndIndex, 27)
        XCTAssertEqual(c.ropeTheta, 500000)
        let dense = try ModelConfig(json: ["architectures": ["Ernie4_5ForCausalLM"]])
        XCTAssertEqual(dense.headDim, 128)
        XCTAssertEqual(dense.numHiddenLayers, 18)
    }

    func testUnknownArchitectureNamesSupportedOnes() {
        XCTAssertThrowsError(try ModelConfig(json: ["architectures": ["LlamaForCausalLM"]])) { error in
            XCTAssertEqual((error as? FormatError)?.message,
                           "unsupported architecture LlamaForCausalLM (supported: Ernie4_5_MoeForCausalLM, Ernie4_5ForCausalLM)")
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
