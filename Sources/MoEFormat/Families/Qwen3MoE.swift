import Foundation

/// Alibaba's Qwen3-MoE (`Qwen3MoeForCausalLM`: Qwen3-30B-A3B, Qwen3-235B-A22B, Qwen3-Coder), as
/// transformers computes it.
///
/// - q_norm / k_norm: RMSNorm over head_dim, per head, before the rotary embedding.
/// - Rotate-half rotary embedding; head_dim may differ from hidden / heads.
/// - Router: softmax over all experts in f32, top-k, renormalised only with `norm_topk_prob`;
///   no shared experts, no correction bias.
/// - A layer is sparse unless listed in `mlp_only_layers`, and when (layer + 1) is a multiple
///   of `decoder_sparse_step`.
/// - Reads both spellings transformers reads: `num_experts` / `num_local_experts`,
///   `rope_theta` / `rope_parameters`.
public enum Qwen3MoE: ModelFamily {
    public static let displayName = "Qwen3-MoE"
    public static let architectures: [Architecture] = [.qwen3MoE]
    public static func modelType(of architecture: Architecture) -> String { "qwen3_moe" }

    public struct Names: TensorNames {}
    public static let expertCountKeys = ["num_experts", "num_local_experts"]
    public static let names: any TensorNames = Names()

    public static func config(json: [String: Any], architecture: Architecture) throws -> ModelConfig {
        let reader = ConfigReader(json: json)
        let common = try DecoderFields(json, defaults: .init(
            vocabSize: 151936, hiddenSize: 2048, intermediateSize: 6144, layers: 24, heads: 32, kvHeads: 4, headDim: nil,
            maxPositions: 32768, rmsNormEps: 1e-6, ropeTheta: 10000, tieWordEmbeddings: false))
        if try reader.bool("use_sliding_window", default: false) {
            throw FormatError("config.json: use_sliding_window is not supported for Qwen3-MoE")
        }
        let maxExperts = ModelConfig.maxExperts
        let experts = try reader.int(json["num_experts"] != nil ? "num_experts" : "num_local_experts", default: 128,
                                     min: 0, max: maxExperts)
        let topK = try reader.int("num_experts_per_tok", default: 8, min: 1, max: maxExperts)
        let width = try reader.int("moe_intermediate_size", default: 768, min: 1, max: 1 << 20)
        let step = try reader.int("decoder_sparse_step", default: 1, min: 1, max: ModelConfig.maxLayers)
        let denseOnly = try reader.intList("mlp_only_layers", max: ModelConfig.maxLayers)
        let layers = experts == 0 ? [] : (0..<common.numHiddenLayers).filter { !denseOnly.contains($0) && ($0 + 1) % step == 0 }
        guard topK <= max(experts, 1) else {
            throw FormatError("config.json: num_experts_per_tok \(topK) is larger than num_experts \(experts)")
        }
        let bias = try reader.bool("attention_bias", default: false)
        return common.config(architecture, rotary: .rotateHalf, qkNorm: true, attentionBias: bias, mlpBias: false,
                             lmHeadBias: false, slidingWindow: nil, experts: experts, topK: layers.isEmpty ? 0 : topK,
                             expertWidth: width, sharedExperts: 0, moeLayers: layers,
                             router: RouterRule(correctionBias: false,
                                                renormalize: try reader.bool("norm_topk_prob", default: false), normMin: 0))
    }
}
