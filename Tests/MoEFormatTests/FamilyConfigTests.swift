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

    /// The ERNIE-4.5-300B-A47B config.json as Baidu publishes it (field for field as FastDeploy's
    /// tests copy it, with 5 layers): no moe_num_shared_experts key (no shared experts),
    /// training-only fields (moe_capacity, moe_use_aux_free, num_nextn_predict_layers,
    /// is_quantized) accepted.
    func testErnie300BHubConfig() throws {
        let c = try ModelConfig(json: [
            "architectures": ["Ernie4_5_MoeForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "dtype": "bfloat16",
            "hidden_act": "silu", "hidden_size": 8192, "intermediate_size": 28672, "max_position_embeddings": 131072,
            "model_type": "ernie4_5_moe", "num_attention_heads": 64, "num_key_value_heads": 8, "num_hidden_layers": 5,
            "pad_token_id": 0, "rms_norm_eps": 1e-05, "use_cache": false, "vocab_size": 103424, "rope_theta": 500000,
            "use_rmsnorm": true, "use_bias": false, "moe_num_experts": 64, "moe_layer_start_index": 1,
            "moe_intermediate_size": 3584, "moe_capacity": [64, 64, 64], "moe_gate": "topk", "moe_k": 8,
            "moe_layer_interval": 1, "moe_use_aux_free": true, "num_nextn_predict_layers": 1,
            "tie_word_embeddings": false, "is_quantized": false,
            "auto_map": ["AutoConfig": "configuration_ernie4_5_moe.Ernie4_5_MoeConfig",
                         "AutoModel": "modeling_ernie4_5_moe.Ernie4_5_Model",
                         "AutoModelForCausalLM": "modeling_ernie4_5_moe.Ernie4_5_MoeForCausalLM"],
        ])
        XCTAssertEqual(c.moeNumSharedExperts, 0)
        XCTAssertEqual(c.moeLayers, [1, 2, 3, 4])
        XCTAssertEqual(c.headDim, 128)
        XCTAssertFalse(c.tieWordEmbeddings)
        XCTAssertEqual(c.router, RouterRule(correctionBias: true, renormalize: true, normMin: 1e-12))
        XCTAssertEqual(c.rotaryStyle, .interleaved)
        // The first release of ERNIE-4.5-0.3B-PT: remote-code class name, auto_map, tied.
        let dense = try ModelConfig(json: [
            "architectures": ["Ernie4_5_ForCausalLM"], "model_type": "ernie4_5", "hidden_size": 1024,
            "intermediate_size": 3072, "num_hidden_layers": 18, "num_attention_heads": 16, "num_key_value_heads": 2,
            "head_dim": 128, "vocab_size": 103424, "rope_theta": 500000, "use_bias": false, "tie_word_embeddings": true,
            "auto_map": ["AutoConfig": "configuration_ernie4_5.Ernie4_5_Config",
                         "AutoModelForCausalLM": "modeling_ernie4_5.Ernie4_5_ForCausalLM"],
        ])
        XCTAssertEqual(dense.architecture, .ernie45)
        XCTAssertEqual(dense.moeLayers, [])
    }
}
