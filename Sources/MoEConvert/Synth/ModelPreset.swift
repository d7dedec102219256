import MoEFormat

/// Named shapes for `moepack synth`: ERNIE 4.5 benchmark sizes and the real models' configs
/// of every family.
public enum ModelPreset: String, CaseIterable, Sendable {
    case tiny
    case benchMoE = "bench-moe"
    case ernie03B = "ernie-4.5-0.3b"
    case ernie21BA3B = "ernie-4.5-21b-a3b"
    case qwen3MoE30BA3B = "qwen3-30b-a3b"
    case mixtral8x7B = "mixtral-8x7b"

    /// config.json contents in the hub form.
    public var configJSON: [String: Any] {
        switch self {
        case .qwen3MoE30BA3B:
            // Qwen/Qwen3-30B-A3B's config.json.
            return ["architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 2048,
                    "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
                    "intermediate_size": 6144, "moe_intermediate_size": 768, "num_experts": 128, "num_experts_per_tok": 8,
                    "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": [Int](), "vocab_size": 151936,
                    "max_position_embeddings": 40960, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
                    "tie_word_embeddings": false, "hidden_act": "silu", "attention_bias": false,
                    "use_sliding_window": false, "bos_token_id": 151643, "eos_token_id": 151645, "torch_dtype": "bfloat16"]
        case .mixtral8x7B:
            // mistralai/Mixtral-8x7B-v0.1's config.json.
            return ["architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 4096,
                    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                    "intermediate_size": 14336, "num_local_experts": 8, "num_experts_per_tok": 2, "vocab_size": 32000,
                    "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-5,
                    "tie_word_embeddings": false, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2,
                    "torch_dtype": "bfloat16"]
        default: return ernieConfigJSON
        }
    }

    private var ernieConfigJSON: [String: Any] {
        var c: [String: Any] = [
            "model_type": "ernie4_5_moe", "architectures": ["Ernie4_5_MoeForCausalLM"],
            "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "hidden_act": "silu", "use_bias": false,
            "tie_word_embeddings": true, "moe_layer_interval": 1, "moe_norm_min": 1e-12,
            "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "torch_dtype": "bfloat16",
        ]
        switch self {
        case .tiny:
            c.merge(["hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "head_dim": 16, "intermediate_size": 128, "moe_intermediate_size": 64, "moe_num_experts": 8,
                     "moe_k": 2, "moe_num_shared_experts": 1, "moe_layer_start_index": 1, "moe_layer_end_index": 3,
                     "vocab_size": 1024, "max_position_embeddings": 4096]) { $1 }
        case .benchMoE:
            c.merge(["hidden_size": 1024, "num_hidden_layers": 12, "num_attention_heads": 16, "num_key_value_heads": 4,
                     "head_dim": 64, "intermediate_size": 2048, "moe_intermediate_size": 512, "moe_num_experts": 32,
                     "moe_k": 4, "moe_num_shared_experts": 1, "moe_layer_start_index": 1, "moe_layer_end_index": 11,
                     "vocab_size": 32000, "max_position_embeddings": 4096]) { $1 }
        case .ernie03B:
            c = c.filter { !["moe_layer_interval", "moe_norm_min"].contains($0.key) }
            c.merge(["model_type": "ernie4_5", "architectures": ["Ernie4_5ForCausalLM"],
                     "hidden_size": 1024, "num_hidden_layers": 18, "num_attention_heads": 16, "num_key_value_heads": 2,
                     "head_dim": 128, "intermediate_size": 3072, "vocab_size": 103424,
                     "max_position_embeddings": 131072]) { $1 }
        case .ernie21BA3B:
            c.merge(["hidden_size": 2560, "num_hidden_layers": 28, "num_attention_heads": 20, "num_key_value_heads": 4,
                     "head_dim": 128, "intermediate_size": 12288, "moe_intermediate_size": 1536, "moe_num_experts": 64,
                     "moe_k": 6, "moe_num_shared_experts": 2, "moe_layer_start_index": 1, "moe_layer_end_index": 27,
                     "vocab_size": 103424, "max_position_embeddings": 131072]) { $1 }
        case .qwen3MoE30BA3B, .mixtral8x7B: break
        }
        return c
    }

    public var config: ModelConfig {
        // The literals above are valid by construction; a failure here is a programming error.
        try! ModelConfig(json: configJSON)
    }
}
