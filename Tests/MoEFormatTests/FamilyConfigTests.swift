import Foundation
import MoEFormat
import XCTest

/// Each family reads its config.json in both spellings transformers reads, with transformers'
/// defaults for absent keys, and names its tensors as the hub does.
final class FamilyConfigTests: XCTestCase {
    func testQwen3MoEHubConfig() throws {
        // Qwen/Qwen3-30B-A3B's config.json (abridged to the fields that matter).
        let c = try ModelConfig(json: [
            "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 2048,
            "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
            "num_experts": 128, "num_experts_per_tok": 8, "moe_intermediate_size": 768, "norm_topk_prob": true,
            "decoder_sparse_step": 1, "mlp_only_layers": [], "rope_theta": 1000000.0, "tie_word_embeddings": false,
            "vocab_size": 151936, "use_sliding_window": false, "sliding_window": 32768,
        ])
        XCTAssertEqual(c.architecture, .qwen3MoE)
        XCTAssertEqual(c.headDim, 128)  // not 2048 / 32
        XCTAssertEqual(c.rotaryStyle, .rotateHalf)
        XCTAssertTrue(c.qkNorm)
        XCTAssertEqual(c.moeNumExperts, 128)
        XCTAssertEqual(c.moeK, 8)
        XCTAssertEqual(c.moeLayers, Array(0..<48))
        XCTAssertEqual(c.router, RouterRule(correctionBias: false, renormalize: true, normMin: 0))
        XCTAssertEqual(c.ropeTheta, 1e6)
        XCTAssertNil(c.slidingWindow)  // use_sliding_window false
        XCTAssertEqual(c.names.router(3), "model.layers.3.mlp.gate.weight")
        XCTAssertEqual(c.names.queryNorm(3), "model.layers.3.self_attn.q_norm.weight")
        XCTAssertEqual(ModelLayout(config: c).tensors.count, 3 + 48 * (2 + 4 + 2 + 1 + 3 * 128))
    }

    func testQwen3MoETransformersFiveSpellingAndSparseRules() throws {
        let c = try ModelConfig(json: [
            "architectures": ["Qwen3MoeForCausalLM"], "num_hidden_layers": 6, "num_local_experts": 4,
            "num_experts_per_tok": 2, "mlp_only_layers": [0, 3], "decoder_sparse_step": 2,
            "rope_parameters": ["rope_type": "default", "rope_theta": 5000.0],
        ])
        XCTAssertEqual(c.moeNumExperts, 4)
        XCTAssertEqual(c.moeLayers, [1, 5])  // (l + 1) % 2 == 0, minus mlp_only_layers
        XCTAssertEqual(c.ropeTheta, 5000)
        XCTAssertFalse(c.router.renormalize)  // norm_topk_prob defaults to false
        XCTAssertEqual(c.headDim, 2048 / 32)
        XCTAssertThrowsError(try ModelConfig(json: ["architectures": ["Qwen3MoeForCausalLM"], "use_sliding_window": true])) {
            XCTAssertTrue("\($0)".contains("use_sliding_window"))
        }
    }

    func testMixtralConfigAndNames() throws {
        // mistralai/Mixtral-8x7B-v0.1's config.json (abridged).
        let c = try ModelConfig(json: [
            "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "num_local_experts": 8,
            "num_experts_per_tok": 2, "rope_theta": 1000000.0, "sliding_window": NSNull(),
        ])
        XCTAssertEqual(c.moeLayers, Array(0..<32))
        XCTAssertEqual(c.moeIntermediateSize, 14336)
        XCTAssertEqual(c.numKeyValueHeads, 8)
        XCTAssertNil(c.slidingWindow)
        XCTAssertEqual(c.router, RouterRule(correctionBias: false, renormalize: true, normMin: 0))
        XCTAssertEqual(c.names.expert(2, 5, .gate), "model.layers.2.block_sparse_moe.experts.5.w1.weight")
        XCTAssertEqual(c.names.expert(2, 5, .up), "model.layers.2.block_sparse_moe.experts.5.w3.weight")
        XCTAssertEqual(c.names.expert(2, 5, .down), "model.layers.2.block_sparse_moe.experts.5.w2.weight")
        XCTAssertEqual(c.names.router(2), "model.layers.2.block_sparse_moe.gate.weight")
        let windowed = try ModelConfig(json: ["architectures": ["MixtralForCausalLM"], "sliding_window": 4096])
        XCTAssertEqual(windowed.slidingWindow, 4096)
        XCTAssertThrowsError(try ModelConfig(json: ["architectures": ["MixtralForCausalLM"], "num_experts_per_tok": 9]))
    }

    func testEveryFamilyRefusesWhatItDoesNotImplement() {
        for arch in ["Qwen3MoeForCausalLM", "MixtralForCausalLM", "Ernie4_5_MoeForCausalLM"] {
            XCTAssertThrowsError(try ModelConfig(json: ["architectures": [arch], "rope_scaling": ["type": "yarn", "factor": 4]])) {
                XCTAssertTrue("\($0)".contains("rope_scaling"), "\(arch): \($0)")
            }
            XCTAssertThrowsError(try ModelConfig(json: ["architectures": [arch], "hidden_act": "gelu"])) {
                XCTAssertTrue("\($0)".contains("hidden_act"), "\(arch): \($0)")
            }
            XCTAssertThrowsError(try ModelConfig(json: ["architectures": [arch], "model_type": "llama"])) {
                XCTAssertTrue("\($0)".contains("does not match"), "\(arch): \($0)")
            }
        }
    }
}
