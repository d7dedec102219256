import Foundation

/// The architectures moepack can run, each belonging to one model family (`ModelFamily`).
public enum Architecture: String, Sendable, Codable, CaseIterable {
    case ernie45MoE = "Ernie4_5_MoeForCausalLM"
    case ernie45 = "Ernie4_5ForCausalLM"
    case qwen3MoE = "Qwen3MoeForCausalLM"
    case mixtral = "MixtralForCausalLM"

    /// The family that reads this architecture's config.json and names its tensors.
    public var family: any ModelFamily.Type { ModelFamilies.family(of: self) }

    var modelType: String { family.modelType(of: self) }

    init?(configName: String) {
        guard let arch = Architecture(rawValue: configName) ?? ModelFamilies.alias(configName) else { return nil }
        self = arch
    }
}

/// How a head's dimensions are paired by the rotary embedding.
public enum RotaryStyle: String, Sendable, Codable {
    /// ERNIE: dimensions (2i, 2i+1) rotate together.
    case interleaved
    /// Llama, Qwen, Mixtral (`rotate_half`): dimensions (i, i + head_dim/2) rotate together.
    case rotateHalf = "rotate_half"
}

/// How a mixture-of-experts router turns its logits into choices and mixing weights. Every
/// family here takes the softmax over all experts in f32 and the top k of it.
public struct RouterRule: Sendable, Codable, Equatable {
    /// ERNIE: the top k are chosen on softmax + a learned correction bias (the weights still
    /// come from the plain softmax).
    public var correctionBias: Bool
    /// Whether the k chosen probabilities are divided by their sum (ERNIE, Mixtral, Qwen3 with
    /// `norm_topk_prob`).
    public var renormalize: Bool
    /// The smallest denominator of that division (ERNIE's `moe_norm_min`; 0 elsewhere).
    public var normMin: Double

    public init(correctionBias: Bool, renormalize: Bool, normMin: Double) {
        self.correctionBias = correctionBias
        self.renormalize = renormalize
        self.normMin = normMin
    }
}

/// A decoder-only transformer with optional mixture-of-experts layers, described without
/// reference to any family: sizes, rotary style, bias flags and the MoE part. Each family reads
/// its own config.json into it (`ModelFamily.config`), including the defaults transformers uses
/// for absent keys.
public struct ModelConfig: Sendable, Codable, Equatable {
    public var architecture: Architecture
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int
    public var maxPositionEmbeddings: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var rotaryStyle: RotaryStyle
    /// Per-head RMSNorm of queries and keys (over head_dim, before the rotary embedding).
    public var qkNorm: Bool
    /// Biases on q, k, v and o.
    public var attentionBias: Bool
    /// Biases on the dense MLP and the shared experts (never on routed experts or the router).
    public var mlpBias: Bool
    public var hasLMHeadBias: Bool
    public var tieWordEmbeddings: Bool
    /// Attention sees only the last `slidingWindow` positions (nil: all of them).
    public var slidingWindow: Int?
    // Mixture of experts (zero experts and no MoE layers for a dense model).
    public var moeNumExperts: Int
    public var moeK: Int
    public var moeIntermediateSize: Int
    public var moeNumSharedExperts: Int
    /// Decoder layers with a mixture-of-experts block, ascending.
    public var moeLayers: [Int]
    public var router: RouterRule
    public var bosTokenID: Int?
    public var eosTokenID: Int?
    public var padTokenID: Int?

    /// Plausibility limits: the largest published models stay well inside them, and they keep
    /// every size product far from overflow before the file's own tensors are compared.
    public static let maxLayers = 1024
    public static let maxExperts = 4096
    public static let maxVocabSize = 1 << 22

    /// A value from the file, shortened for an error message.
    static func clip(_ text: String) -> String { text.count <= 80 ? text : String(text.prefix(80)) + "…" }

    /// Whether decoder layer `layer` has a mixture-of-experts block.
    public func isMoELayer(_ layer: Int) -> Bool { moeLayers.contains(layer) }

    public var sharedExpertSize: Int { moeIntermediateSize * moeNumSharedExperts }

    /// The tensor names of this model's family.
    public var names: any TensorNames { architecture.family.names }
}

extension ModelConfig {
    public init(jsonData: Data) throws {
        let parsed: Any
        do { parsed = try JSONSerialization.jsonObject(with: jsonData) } catch {
            throw FormatError("config.json is not valid JSON")
        }
        guard let json = parsed as? [String: Any] else { throw FormatError("config.json is not a JSON object") }
        try self.init(json: json)
    }

    public init(json: [String: Any]) throws {
        let supported = Architecture.allCases.map(\.rawValue).joined(separator: ", ")
        let names = (json["architectures"] as? [Any])?.compactMap { $0 as? String } ?? []
        let modelType = json["model_type"] as? String
        let architecture: Architecture
        if let arch = names.lazy.compactMap(Architecture.init(configName:)).first {
            architecture = arch
        } else if names.isEmpty, let modelType, let arch = Architecture.allCases.first(where: { $0.modelType == modelType }) {
            architecture = arch
        } else {
            let found = names.isEmpty ? (modelType ?? "none") : names.joined(separator: ", ")
            throw FormatError("unsupported architecture \(Self.clip(found)) (supported: \(supported))")
        }
        if let modelType, modelType != architecture.modelType {
            throw FormatError("config.json: model_type \(Self.clip(modelType)) does not match architecture "
                              + "\(architecture.rawValue) (expected \(architecture.modelType))")
        }
        self = try architecture.family.config(json: json, architecture: architecture)
        try checkShapes()
    }

    /// Checks shared by every family once its fields are read.
    private func checkShapes() throws {
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw FormatError("config.json: num_attention_heads \(numAttentionHeads) is not a multiple of num_key_value_heads \(numKeyValueHeads)")
        }
        guard headDim % 2 == 0 else { throw FormatError("config.json: head_dim \(headDim) must be even for rotary embeddings") }
        guard moeK <= moeNumExperts else {
            throw FormatError("config.json: the top-k (\(moeK)) is larger than the expert count (\(moeNumExperts))")
        }
        guard moeLayers.isEmpty || moeNumExperts > 0 else {
            throw FormatError("config.json: MoE layers without experts")
        }
    }
}

extension ModelConfig {
    /// The config fields that define the computation, in a fixed text form (raw config.json
    /// bytes are not used: a bundle may store the config differently). ERNIE's text is the
    /// same as before the families existed, so fingerprints and calibration files stay valid.
    public var canonicalText: String {
        let c = self
        var fields: [(String, String)] = [
            ("architecture", c.architecture.rawValue), ("vocab_size", "\(c.vocabSize)"),
            ("hidden_size", "\(c.hiddenSize)"), ("intermediate_size", "\(c.intermediateSize)"),
            ("num_hidden_layers", "\(c.numHiddenLayers)"), ("num_attention_heads", "\(c.numAttentionHeads)"),
            ("num_key_value_heads", "\(c.numKeyValueHeads)"), ("head_dim", "\(c.headDim)"),
            ("rms_norm_eps", "\(c.rmsNormEps)"), ("rope_theta", "\(c.ropeTheta)"), ("use_bias", "\(c.attentionBias)"),
            ("tie_word_embeddings", "\(c.tieWordEmbeddings)"), ("moe_num_experts", "\(c.moeNumExperts)"),
            ("moe_k", "\(c.moeK)"), ("moe_intermediate_size", "\(c.moeIntermediateSize)"),
            ("moe_num_shared_experts", "\(c.moeNumSharedExperts)"), ("moe_layers", "\(c.moeLayers)"),
            ("moe_norm_min", "\(c.router.normMin)"),
        ]
        if ObjectIdentifier(c.architecture.family) != ObjectIdentifier(Ernie45.self) {
            fields += [("rotary", c.rotaryStyle.rawValue), ("qk_norm", "\(c.qkNorm)"), ("mlp_bias", "\(c.mlpBias)"),
                       ("lm_head_bias", "\(c.hasLMHeadBias)"), ("sliding_window", "\(c.slidingWindow ?? 0)"),
                       ("router_bias", "\(c.router.correctionBias)"), ("renormalize", "\(c.router.renormalize)")]
        }
        return fields.map { "\($0.0)=\($0.1)\n" }.joined()
    }
}
