import Foundation

/// The architectures moepack can run.
public enum Architecture: String, Sendable, Codable, CaseIterable {
    case ernie45MoE = "Ernie4_5_MoeForCausalLM"
    case ernie45 = "Ernie4_5ForCausalLM"

    var modelType: String {
        switch self {
        case .ernie45MoE: "ernie4_5_moe"
        case .ernie45: "ernie4_5"
        }
    }

    /// Other spellings of the same class in config.json: the first ERNIE 4.5 release (June 2025)
    /// names the dense class `Ernie4_5_ForCausalLM` (its remote code), later ones as transformers does.
    static let aliases: [String: Architecture] = ["Ernie4_5_ForCausalLM": .ernie45]

    init?(configName: String) {
        guard let arch = Architecture(rawValue: configName) ?? Self.aliases[configName] else { return nil }
        self = arch
    }
}

/// config.json of an ERNIE 4.5 checkpoint. Reads both the hub form (`rope_theta`, `head_dim`)
/// and the form transformers 5 writes (`rope_parameters`, no `head_dim`); missing fields take
/// transformers' defaults for the architecture.
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
    public var useBias: Bool
    public var tieWordEmbeddings: Bool
    // Mixture of experts (zero experts for the dense architecture).
    public var moeNumExperts: Int
    public var moeK: Int
    public var moeIntermediateSize: Int
    public var moeNumSharedExperts: Int
    public var moeLayerStartIndex: Int
    public var moeLayerEndIndex: Int
    public var moeLayerInterval: Int
    public var moeNormMin: Double
    public var bosTokenID: Int?
    public var eosTokenID: Int?
    public var padTokenID: Int?

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
        try Self.refuseUnimplemented(json)
        let reader = ConfigReader(json: json)
        let moe = architecture == .ernie45MoE
        vocabSize = try reader.int("vocab_size", default: 103424, min: 1, max: Self.maxVocabSize)
        hiddenSize = try reader.int("hidden_size", default: moe ? 2560 : 1024, min: 1, max: 1 << 16)
        intermediateSize = try reader.int("intermediate_size", default: moe ? 12288 : 3072, min: 1, max: 1 << 20)
        numHiddenLayers = try reader.int("num_hidden_layers", default: moe ? 28 : 18, min: 1, max: Self.maxLayers)
        numAttentionHeads = try reader.int("num_attention_heads", default: moe ? 20 : 16, min: 1, max: 1024)
        numKeyValueHeads = try reader.int("num_key_value_heads", default: moe ? 4 : 2, min: 1, max: 1024)
        headDim = try reader.int("head_dim", default: moe ? hiddenSize / numAttentionHeads : 128, min: 1, max: 4096)
        maxPositionEmbeddings = try reader.int("max_position_embeddings", default: 131072, min: 1, max: 1 << 24)
        rmsNormEps = try reader.double("rms_norm_eps", default: 1e-5)
        let ropeParameters = json["rope_parameters"] as? [String: Any]
        if let type = ropeParameters?["rope_type"] as? String, type != "default" {
            throw FormatError("config.json: rope_type \(type) is not supported (only default)")
        }
        ropeTheta = try ropeParameters.map { try ConfigReader(json: $0).double("rope_theta", default: 500000) }
            ?? reader.double("rope_theta", default: 500000)
        useBias = try reader.bool("use_bias", default: false)
        tieWordEmbeddings = try reader.bool("tie_word_embeddings", default: true)
        if let act = json["hidden_act"] as? String, act != "silu" {
            throw FormatError("config.json: hidden_act \(act) is not supported (only silu)")
        }
        if moe {
            moeNumExperts = try reader.int("moe_num_experts", default: 64, min: 1, max: Self.maxExperts)
            moeK = try reader.int("moe_k", default: 6, min: 1, max: Self.maxExperts)
            moeIntermediateSize = try reader.int("moe_intermediate_size", default: 1536, min: 1, max: 1 << 20)
            // Absent means none: the 300B-A47B config has no such key and no shared experts (Baidu's
            // own configuration code defaults to 0; transformers' class says 2, which would leave
            // that checkpoint's shared experts uninitialised).
            moeNumSharedExperts = try reader.int("moe_num_shared_experts", default: 0, min: 0, max: 64)
            moeLayerStartIndex = try reader.int("moe_layer_start_index", default: 1, min: 0, max: Self.maxLayers)
            let end = try reader.int("moe_layer_end_index", default: -1, min: -1, max: Self.maxLayers)
            moeLayerEndIndex = end == -1 ? numHiddenLayers - 1 : end
            moeLayerInterval = try reader.int("moe_layer_interval", default: 1, min: 1, max: Self.maxLayers)
            moeNormMin = try reader.double("moe_norm_min", default: 1e-12)
            guard moeK <= moeNumExperts else {
                throw FormatError("config.json: moe_k \(moeK) is larger than moe_num_experts \(moeNumExperts)")
            }
        } else {
            moeNumExperts = 0; moeK = 0; moeIntermediateSize = 0; moeNumSharedExperts = 0
            moeLayerStartIndex = 0; moeLayerEndIndex = -1; moeLayerInterval = 1; moeNormMin = 1e-12
        }
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw FormatError("config.json: num_attention_heads \(numAttentionHeads) is not a multiple of num_key_value_heads \(numKeyValueHeads)")
        }
        guard headDim % 2 == 0 else { throw FormatError("config.json: head_dim \(headDim) must be even for rotary embeddings") }
        bosTokenID = try reader.optionalInt("bos_token_id")
        eosTokenID = try reader.optionalInt("eos_token_id")
        padTokenID = try reader.optionalInt("pad_token_id")
    }

    /// Plausibility limits: the largest published models stay well inside them, and they keep
    /// every size product far from overflow before the file's own tensors are compared.
    public static let maxLayers = 1024
    public static let maxExperts = 4096
    public static let maxVocabSize = 1 << 22

    /// Fields that change what transformers computes and that moepack does not implement are
    /// refused by name rather than silently ignored.
    static func refuseUnimplemented(_ json: [String: Any]) throws {
        func isSet(_ key: String) -> Bool { json[key].map { !($0 is NSNull) } ?? false }
        if isSet("quantization_config") {
            throw FormatError("config.json: quantization_config is set: pre-quantized checkpoints are not supported; "
                              + "use the full-precision release")
        }
        if isSet("rope_scaling") {
            throw FormatError("config.json: rope_scaling is not supported (only plain rotary embeddings)")
        }
        if isSet("sliding_window") {
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

    /// A value from the file, shortened for an error message.
    static func clip(_ text: String) -> String { text.count <= 80 ? text : String(text.prefix(80)) + "…" }

    /// Whether decoder layer `layer` has a mixture-of-experts block (transformers' rule).
    public func isMoELayer(_ layer: Int) -> Bool {
        architecture == .ernie45MoE
            && (layer + 1) % moeLayerInterval == 0
            && layer >= moeLayerStartIndex && layer <= moeLayerEndIndex
    }

    /// transformers gives lm_head a bias only in the MoE architecture.
    public var hasLMHeadBias: Bool { useBias && architecture == .ernie45MoE }

    public var moeLayers: [Int] { (0..<numHiddenLayers).filter(isMoELayer) }
    public var sharedExpertSize: Int { moeIntermediateSize * moeNumSharedExperts }
}

/// Typed access to config.json fields with clear errors.
private struct ConfigReader {
    let json: [String: Any]

    func int(_ key: String, default value: Int, min: Int, max: Int) throws -> Int {
        guard let raw = json[key], !(raw is NSNull) else { return value }
        if raw is [Any] {
            throw FormatError("config.json: \(key) is a list; per-modality values are not supported")
        }
        guard let n = SafeTensorsFile.exactInt(raw) else { throw FormatError("config.json: \(key) is not an integer") }
        guard n >= min, n <= max else {
            throw FormatError("config.json: \(key) = \(n) is out of range (\(min) to \(max))")
        }
        return n
    }

    func optionalInt(_ key: String) throws -> Int? {
        guard let raw = json[key], !(raw is NSNull) else { return nil }
        if let list = raw as? [Any] { return list.first.flatMap(SafeTensorsFile.exactInt) }
        return SafeTensorsFile.exactInt(raw)
    }

    func double(_ key: String, default value: Double) throws -> Double {
        guard let raw = json[key], !(raw is NSNull) else { return value }
        guard let n = raw as? NSNumber, String(cString: n.objCType) != "c" else {
            throw FormatError("config.json: \(key) is not a number")
        }
        let d = n.doubleValue
        guard d.isFinite, d >= 0 else { throw FormatError("config.json: \(key) = \(d) is out of range") }
        return d
    }

    func bool(_ key: String, default value: Bool) throws -> Bool {
        guard let raw = json[key], !(raw is NSNull) else { return value }
        guard let n = raw as? NSNumber, String(cString: n.objCType) == "c" else {
            throw FormatError("config.json: \(key) is not true or false")
        }
        return n.boolValue
    }
}

extension ModelConfig {
    /// The config fields that define the computation, in a fixed text form (raw config.json
    /// bytes are not used: a bundle may store the config differently).
    public var canonicalText: String {
        let c = self
        let fields: [(String, String)] = [
            ("architecture", c.architecture.rawValue), ("vocab_size", "\(c.vocabSize)"),
            ("hidden_size", "\(c.hiddenSize)"), ("intermediate_size", "\(c.intermediateSize)"),
            ("num_hidden_layers", "\(c.numHiddenLayers)"), ("num_attention_heads", "\(c.numAttentionHeads)"),
            ("num_key_value_heads", "\(c.numKeyValueHeads)"), ("head_dim", "\(c.headDim)"),
            ("rms_norm_eps", "\(c.rmsNormEps)"), ("rope_theta", "\(c.ropeTheta)"), ("use_bias", "\(c.useBias)"),
            ("tie_word_embeddings", "\(c.tieWordEmbeddings)"), ("moe_num_experts", "\(c.moeNumExperts)"),
            ("moe_k", "\(c.moeK)"), ("moe_intermediate_size", "\(c.moeIntermediateSize)"),
            ("moe_num_shared_experts", "\(c.moeNumSharedExperts)"), ("moe_layers", "\(c.moeLayers)"),
            ("moe_norm_min", "\(c.moeNormMin)"),
        ]
        return fields.map { "\($0.0)=\($0.1)\n" }.joined()
    }
}
