import Foundation

/// Mistral AI's Mixtral (`MixtralForCausalLM`: Mixtral-8x7B, 8x22B), as transformers computes it.
///
/// - Every layer is sparse: `num_local_experts` experts of width `intermediate_size`, no shared
///   experts; the hub names them `block_sparse_moe.experts.E.w1/w3/w2` (gate/up/down).
/// - Router: softmax over all experts in f32, top-k, always renormalised.
/// - Rotate-half rotary embedding; attention over the last `sliding_window` positions when the
///   config sets one.
public enum Mixtral: ModelFamily {
    public static let displayName = "Mixtral"
    public static let architectures: [Architecture] = [.mixtral]
    public static func modelType(of architecture: Architecture) -> String { "mixtral" }

    public struct Names: TensorNames {
        public func router(_ layer: Int) -> String { "model.layers.\(layer).block_sparse_moe.gate.weight" }
        public func expert(_ layer: Int, _ expert: Int, _ projection: FeedForwardProjection) -> String {
            let w = switch projection { case .gate: "w1"; case .up: "w3"; case .down: "w2" }
            return "model.layers.\(layer).block_sparse_moe.experts.\(expert).\(w).weight"
        }
    }

    public static let expertCountKeys = ["num_local_experts", "num_experts"]

    public static let names: any TensorNames = Names()

    public static func config(json: [String: Any], architecture: Architecture) throws -> ModelConfig {
        let reader = ConfigReader(json: json)
        let common = try DecoderFields(json, defaults: .init(
            vocabSize: 32000, hiddenSize: 4096, intermediateSize: 14336, layers: 32, heads: 32, kvHeads: 8, headDim: nil,
            maxPositions: 131072, rmsNormEps: 1e-5, ropeTheta: 1e6, tieWordEmbeddings: false))
        let maxExperts = ModelConfig.maxExperts
        let experts = try reader.int(json["num_local_experts"] != nil ? "num_local_experts" : "num_experts", default: 8,
                                     min: 1, max: maxExperts)
        let topK = try reader.int("num_experts_per_tok", default: 2, min: 1, max: maxExperts)
        guard topK <= experts else {
            throw FormatError("config.json: num_experts_per_tok \(topK) is larger than num_local_experts \(experts)")
        }
        let window = try reader.optionalInt("sliding_window")
        if let window, window < 1 { throw FormatError("config.json: sliding_window \(window) must be positive") }
        return common.config(architecture, rotary: .rotateHalf, qkNorm: false, attentionBias: false, mlpBias: false,
                             lmHeadBias: false, slidingWindow: window, experts: experts, topK: topK,
                             expertWidth: common.intermediateSize, sharedExperts: 0,
                             moeLayers: Array(0..<common.numHiddenLayers),
                             router: RouterRule(correctionBias: false, renormalize: true, normMin: 0))
    }
}
