import Foundation

/// One of a feed-forward block's three products (SwiGLU: down(silu(gate·x) ⊙ up·x)).
public enum FeedForwardProjection: String, Sendable, CaseIterable {
    case gate, up, down
}

/// One of attention's four products.
public enum AttentionProjection: String, Sendable, CaseIterable {
    case q, k, v, o
}

/// The checkpoint's tensor name of every role. The defaults are the Llama-style names that
/// every family here shares (`model.embed_tokens`, `model.layers.L.self_attn.q_proj`, ...); a
/// family overrides what it names differently.
public protocol TensorNames: Sendable {
    var embedding: String { get }
    var finalNorm: String { get }
    var lmHead: String { get }
    var lmHeadBias: String { get }
    func inputNorm(_ layer: Int) -> String
    func postAttentionNorm(_ layer: Int) -> String
    func attention(_ layer: Int, _ projection: AttentionProjection, bias: Bool) -> String
    func queryNorm(_ layer: Int) -> String
    func keyNorm(_ layer: Int) -> String
    func denseMLP(_ layer: Int, _ projection: FeedForwardProjection, bias: Bool) -> String
    func router(_ layer: Int) -> String
    /// The router's correction bias (families whose router rule has one).
    func routerBias(_ layer: Int) -> String
    func expert(_ layer: Int, _ expert: Int, _ projection: FeedForwardProjection) -> String
    func sharedExperts(_ layer: Int, _ projection: FeedForwardProjection, bias: Bool) -> String
}

extension TensorNames {
    public var embedding: String { "model.embed_tokens.weight" }
    public var finalNorm: String { "model.norm.weight" }
    public var lmHead: String { "lm_head.weight" }
    public var lmHeadBias: String { "lm_head.bias" }
    public func inputNorm(_ layer: Int) -> String { "model.layers.\(layer).input_layernorm.weight" }
    public func postAttentionNorm(_ layer: Int) -> String { "model.layers.\(layer).post_attention_layernorm.weight" }
    public func attention(_ layer: Int, _ projection: AttentionProjection, bias: Bool) -> String {
        "model.layers.\(layer).self_attn.\(projection.rawValue)_proj.\(bias ? "bias" : "weight")"
    }
    public func queryNorm(_ layer: Int) -> String { "model.layers.\(layer).self_attn.q_norm.weight" }
    public func keyNorm(_ layer: Int) -> String { "model.layers.\(layer).self_attn.k_norm.weight" }
    public func denseMLP(_ layer: Int, _ projection: FeedForwardProjection, bias: Bool) -> String {
        "model.layers.\(layer).mlp.\(projection.rawValue)_proj.\(bias ? "bias" : "weight")"
    }
    public func router(_ layer: Int) -> String { "model.layers.\(layer).mlp.gate.weight" }
    public func routerBias(_ layer: Int) -> String { "model.layers.\(layer).mlp.gate.e_score_correction_bias" }
    public func expert(_ layer: Int, _ expert: Int, _ projection: FeedForwardProjection) -> String {
        "model.layers.\(layer).mlp.experts.\(expert).\(projection.rawValue)_proj.weight"
    }
    public func sharedExperts(_ layer: Int, _ projection: FeedForwardProjection, bias: Bool) -> String {
        "model.layers.\(layer).mlp.shared_experts.\(projection.rawValue)_proj.\(bias ? "bias" : "weight")"
    }
}

/// Everything family-specific about a model, in one file per family (`Families/*.swift`):
/// the architectures it accepts, how it reads config.json (defaults of absent keys, fields it
/// refuses), its tensor names, the tensors it carries or ignores, and its chat format. The
/// runtime, converter, calibrator and inspector ask the config and these; no hub tensor name
/// appears outside a family file.
public protocol ModelFamily {
    /// The family's name in messages and docs ("ERNIE 4.5").
    static var displayName: String { get }
    static var architectures: [Architecture] { get }
    /// Other spellings of an architecture that config.json may carry.
    static var aliases: [String: Architecture] { get }
    static func modelType(of architecture: Architecture) -> String
    static func config(json: [String: Any], architecture: Architecture) throws -> ModelConfig
    static var names: any TensorNames { get }
    /// The config.json keys that hold the routed-expert count (an export that drops pruned
    /// experts rewrites them); the first is written when the config has none of them.
    static var expertCountKeys: [String] { get }
    /// Stored tensors that are not part of the next-token model and travel into bundles
    /// unmodified (ERNIE's multi-token-prediction heads).
    static func isCarried(_ name: String) -> Bool
    /// A reason to refuse a checkpoint from its tensor names alone (another framework's
    /// layout), before the missing and unexpected tensors are listed.
    static func refusal(names: [String]) -> String?
}

extension ModelFamily {
    public static var aliases: [String: Architecture] { [:] }
    public static func isCarried(_ name: String) -> Bool { false }
    public static func refusal(names: [String]) -> String? { nil }
}

/// The registry: every family moepack knows. Adding a family is a file in Families/ and a line here.
public enum ModelFamilies {
    public static let all: [any ModelFamily.Type] = [Ernie45.self, Qwen3MoE.self, Mixtral.self]

    public static func family(of architecture: Architecture) -> any ModelFamily.Type {
        all.first { $0.architectures.contains(architecture) }!
    }

    static func alias(_ name: String) -> Architecture? {
        all.lazy.compactMap { $0.aliases[name] }.first
    }
}
