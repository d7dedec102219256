import Foundation

/// Baidu's ERNIE 4.5: `Ernie4_5_MoeForCausalLM` (21B-A3B, 300B-A47B) and the dense
/// `Ernie4_5ForCausalLM` (0.3B), as transformers computes them.
///
/// - Interleaved rotary embedding (pairs 2i, 2i+1); no q/k norms.
/// - Router in f32: softmax, top-k chosen on softmax + `e_score_correction_bias`, weights from
///   the plain softmax renormalised with a floor of `moe_norm_min`.
/// - Shared experts: one MLP of width `moe_intermediate_size × moe_num_shared_experts`.
/// - MoE layers: from `moe_layer_start_index` to `moe_layer_end_index`, every `moe_layer_interval`.
/// - `use_bias` adds biases to q/k/v/o, the dense MLP, the shared experts and (MoE only) lm_head.
/// - Hub MoE checkpoints carry multi-token-prediction tensors (`model.mtp_*`), carried along.
public enum Ernie45: ModelFamily {
    public static let displayName = "ERNIE 4.5"
    public static let architectures: [Architecture] = [.ernie45MoE, .ernie45]
    /// The first release (June 2025) names the dense class `Ernie4_5_ForCausalLM` (its remote
    /// code); later ones spell it as transformers does.
    public static let aliases: [String: Architecture] = ["Ernie4_5_ForCausalLM": .ernie45]

    public static func modelType(of architecture: Architecture) -> String {
        architecture == .ernie45MoE ? "ernie4_5_moe" : "ernie4_5"
    }

    public struct Names: TensorNames {
        public func routerBias(_ layer: Int) -> String { "model.layers.\(layer).mlp.moe_statics.e_score_correction_bias" }
    }

    public static let expertCountKeys = ["moe_num_experts"]

    public static let names: any TensorNames = Names()

    public static func isCarried(_ name: String) -> Bool { name.hasPrefix("model.mtp_") || name.hasPrefix("mtp_") }

    public static func refusal(names: [String]) -> String? {
        guard names.contains(where: { $0.hasPrefix("ernie.") }) else { return nil }
        return "this is a PaddlePaddle checkpoint (tensor names start with 'ernie.', weights fused and transposed): "
            + "use the model's PyTorch release instead, the hub repository whose name ends in -PT "
            + "(for example baidu/ERNIE-4.5-21B-A3B-PT), which holds the same weights"
    }

    public static func config(json: [String: Any], architecture: Architecture) throws -> ModelConfig {
        try refuseUnimplemented(json)
        let moe = architecture == .ernie45MoE
        let reader = ConfigReader(json: json)
        let common = try DecoderFields(json, defaults: .init(
            vocabSize: 103424, hiddenSize: moe ? 2560 : 1024, intermediateSize: moe ? 12288 : 3072, layers: moe ? 28 : 18,
            heads: moe ? 20 : 16, kvHeads: moe ? 4 : 2, headDim: moe ? nil : 128, maxPositions: 131072,
            rmsNormEps: 1e-5, ropeTheta: 500000, tieWordEmbeddings: true))
        let useBias = try reader.bool("use_bias", default: false)
        guard common.numAttentionHeads % common.numKeyValueHeads == 0 else {
            throw FormatError("config.json: num_attention_heads \(common.numAttentionHeads) is not a multiple of num_key_value_heads \(common.numKeyValueHeads)")
        }
        var experts = 0, topK = 0, width = 0, shared = 0, layers: [Int] = [], normMin = 1e-12
        if moe {
            let maxLayers = ModelConfig.maxLayers, maxExperts = ModelConfig.maxExperts
            experts = try reader.int("moe_num_experts", default: 64, min: 1, max: maxExperts)
            topK = try reader.int("moe_k", default: 6, min: 1, max: maxExperts)
            width = try reader.int("moe_intermediate_size", default: 1536, min: 1, max: 1 << 20)
            // Absent means none: the 300B-A47B config has no such key and no shared experts (Baidu's
            // own configuration code defaults to 0; transformers' class says 2, which would leave
            // that checkpoint's shared experts uninitialised).
            shared = try reader.int("moe_num_shared_experts", default: 0, min: 0, max: 64)
            let start = try reader.int("moe_layer_start_index", default: 1, min: 0, max: maxLayers)
            let endField = try reader.int("moe_layer_end_index", default: -1, min: -1, max: maxLayers)
            let end = endField == -1 ? common.numHiddenLayers - 1 : endField
            let interval = try reader.int("moe_layer_interval", default: 1, min: 1, max: maxLayers)
            normMin = try reader.double("moe_norm_min", default: 1e-12)
            guard topK <= experts else {
                throw FormatError("config.json: moe_k \(topK) is larger than moe_num_experts \(experts)")
            }
            // transformers' rule for which layers are sparse.
            layers = (0..<common.numHiddenLayers).filter { ($0 + 1) % interval == 0 && $0 >= start && $0 <= end }
        }
        return common.config(architecture, rotary: .interleaved, qkNorm: false, attentionBias: useBias, mlpBias: useBias,
                             lmHeadBias: useBias && moe, slidingWindow: nil, experts: experts, topK: topK, expertWidth: width,
                             sharedExperts: shared, moeLayers: layers,
                             router: RouterRule(correctionBias: true, renormalize: true, normMin: normMin))
    }

    /// Fields that change what transformers computes and that moepack does not implement are
    /// refused by name rather than silently ignored.
    static func refuseUnimplemented(_ json: [String: Any]) throws {
        // quantization_config and rope_scaling are refused for every family (DecoderFields).
        let clip = ModelConfig.clip
        if ModelConfig.isSet(json, "sliding_window") {
            throw FormatError("config.json: sliding_window is not supported for this architecture")
        }
        if let gate = json["moe_gate"], !(gate is NSNull), (gate as? String) != "topk" {
            throw FormatError("config.json: moe_gate \(clip("\(gate)")) is not supported (only topk)")
        }
        if let act = json["moe_gate_act"], !(act is NSNull), (act as? String) != "softmax" {
            throw FormatError("config.json: moe_gate_act \(clip("\(act)")) is not supported (only softmax)")
        }
        if let coefficient = json["scale_qk_coeff"], !(coefficient is NSNull), (coefficient as? NSNumber)?.doubleValue != 1 {
            throw FormatError("config.json: scale_qk_coeff \(clip("\(coefficient)")) is not supported (only 1.0)")
        }
        if let rms = json["use_rmsnorm"], !(rms is NSNull), (rms as? NSNumber)?.boolValue != true {
            throw FormatError("config.json: use_rmsnorm false (LayerNorm) is not supported")
        }
    }
}
