import Foundation

/// Typed access to config.json fields with clear errors.
struct ConfigReader {
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

/// The config.json fields every family spells the same way, read with a family's defaults.
struct DecoderFields {
    struct Defaults {
        var vocabSize: Int, hiddenSize: Int, intermediateSize: Int, layers: Int, heads: Int, kvHeads: Int?
        /// nil: hidden_size / num_attention_heads.
        var headDim: Int?
        var maxPositions: Int, rmsNormEps: Double, ropeTheta: Double, tieWordEmbeddings: Bool
    }

    var vocabSize, hiddenSize, intermediateSize, numHiddenLayers, numAttentionHeads, numKeyValueHeads, headDim: Int
    var maxPositionEmbeddings: Int
    var rmsNormEps, ropeTheta: Double
    var tieWordEmbeddings: Bool
    var bosTokenID, eosTokenID, padTokenID: Int?

    init(_ json: [String: Any], defaults d: Defaults) throws {
        // Refused before any size is read, for every family.
        if ModelConfig.isSet(json, "quantization_config") {
            throw FormatError("config.json: quantization_config is set: pre-quantized checkpoints are not supported; "
                              + "use the full-precision release")
        }
        if ModelConfig.isSet(json, "rope_scaling") {
            throw FormatError("config.json: rope_scaling is not supported (only plain rotary embeddings)")
        }
        let reader = ConfigReader(json: json)
        vocabSize = try reader.int("vocab_size", default: d.vocabSize, min: 1, max: ModelConfig.maxVocabSize)
        hiddenSize = try reader.int("hidden_size", default: d.hiddenSize, min: 1, max: 1 << 16)
        intermediateSize = try reader.int("intermediate_size", default: d.intermediateSize, min: 1, max: 1 << 20)
        numHiddenLayers = try reader.int("num_hidden_layers", default: d.layers, min: 1, max: ModelConfig.maxLayers)
        numAttentionHeads = try reader.int("num_attention_heads", default: d.heads, min: 1, max: 1024)
        numKeyValueHeads = try reader.int("num_key_value_heads", default: d.kvHeads ?? numAttentionHeads, min: 1, max: 1024)
        headDim = try reader.int("head_dim", default: d.headDim ?? hiddenSize / numAttentionHeads, min: 1, max: 4096)
        maxPositionEmbeddings = try reader.int("max_position_embeddings", default: d.maxPositions, min: 1, max: 1 << 24)
        rmsNormEps = try reader.double("rms_norm_eps", default: d.rmsNormEps)
        // transformers 4 writes rope_theta; transformers 5 writes rope_parameters.
        let ropeParameters = json["rope_parameters"] as? [String: Any]
        if let type = ropeParameters?["rope_type"] as? String, type != "default" {
            throw FormatError("config.json: rope_type \(ModelConfig.clip(type)) is not supported (only default)")
        }
        ropeTheta = try ropeParameters.flatMap { $0["rope_theta"] == nil ? nil : try ConfigReader(json: $0).double("rope_theta", default: d.ropeTheta) }
            ?? reader.double("rope_theta", default: d.ropeTheta)
        tieWordEmbeddings = try reader.bool("tie_word_embeddings", default: d.tieWordEmbeddings)
        if let act = json["hidden_act"] as? String, act != "silu" {
            throw FormatError("config.json: hidden_act \(ModelConfig.clip(act)) is not supported (only silu)")
        }
        bosTokenID = try reader.optionalInt("bos_token_id")
        eosTokenID = try reader.optionalInt("eos_token_id")
        padTokenID = try reader.optionalInt("pad_token_id")
    }

    /// The family-neutral config from these fields and a family's own.
    func config(_ architecture: Architecture, rotary: RotaryStyle, qkNorm: Bool, attentionBias: Bool, mlpBias: Bool,
                lmHeadBias: Bool, slidingWindow: Int?, experts: Int, topK: Int, expertWidth: Int, sharedExperts: Int,
                moeLayers: [Int], router: RouterRule) -> ModelConfig {
        ModelConfig(architecture: architecture, vocabSize: vocabSize, hiddenSize: hiddenSize, intermediateSize: intermediateSize,
                    numHiddenLayers: numHiddenLayers, numAttentionHeads: numAttentionHeads, numKeyValueHeads: numKeyValueHeads,
                    headDim: headDim, maxPositionEmbeddings: maxPositionEmbeddings, rmsNormEps: rmsNormEps, ropeTheta: ropeTheta,
                    rotaryStyle: rotary, qkNorm: qkNorm, attentionBias: attentionBias, mlpBias: mlpBias, hasLMHeadBias: lmHeadBias,
                    tieWordEmbeddings: tieWordEmbeddings, slidingWindow: slidingWindow, moeNumExperts: experts, moeK: topK,
                    moeIntermediateSize: expertWidth, moeNumSharedExperts: sharedExperts, moeLayers: moeLayers, router: router,
                    bosTokenID: bosTokenID, eosTokenID: eosTokenID, padTokenID: padTokenID)
    }
}

extension ModelConfig {
    /// Whether config.json sets `key` to something other than null.
    static func isSet(_ json: [String: Any], _ key: String) -> Bool { json[key].map { !($0 is NSNull) } ?? false }
}

extension ConfigReader {
    /// A list of integers in 0...max (absent or null: empty).
    func intList(_ key: String, max: Int) throws -> [Int] {
        guard let raw = json[key], !(raw is NSNull) else { return [] }
        guard let list = raw as? [Any], list.count <= max + 1 else { throw FormatError("config.json: \(key) is not a list of layer indices") }
        return try list.map { item in
            guard let n = SafeTensorsFile.exactInt(item), n >= 0, n <= max else {
                throw FormatError("config.json: \(key) holds \(ModelConfig.clip("\(item)")), not a layer index")
            }
            return n
        }
    }
}
