import Foundation
import MoEFormat
import MoETokenizer

extension LanguageModel {
    /// Loads the model and its tokenizer from a MODEL path: a checkpoint directory with
    /// tokenizer.model and the Hugging Face tokenizer JSON files next to the weights, or a bundle
    /// that carries them. `cachePrecision` overrides how the model's KV caches store keys and
    /// values (`ErnieModel.cachePrecision`).
    public static func load(at path: String, cachePrecision: KVCache.Precision? = nil) throws -> LanguageModel {
        try load(ModelSource(path: path), cachePrecision: cachePrecision)
    }

    /// `load(at:)` from an opened source.
    public static func load(_ source: ModelSource, cachePrecision: KVCache.Precision? = nil) throws -> LanguageModel {
        let path = source.path
        let model = try source.model(cachePrecision: cachePrecision)
        let tokenizer = try source.tokenizer()
        // Pieces plus added tokens must fit the embedding (ERNIE 4.5: 100,295 pieces and about
        // 1,000 added tokens in 103,424 rows); an id beyond it would be refused mid-request.
        let vocabulary = tokenizer.vocabularySize, rows = model.config.vocabSize
        guard vocabulary <= rows else {
            throw FormatError("\(path): the tokenizer has \(vocabulary) ids (\(tokenizer.modelVocabularySize) pieces "
                              + "and added tokens up to id \(vocabulary - 1)), but the model's embedding has only \(rows) rows: "
                              + "the tokenizer files do not belong to this model")
        }
        var stops = tokenizer.stopTokenIDs
        if let eos = model.config.eosTokenID, let id = Int32(exactly: eos) { stops.insert(id) }
        let generation = try GenerationConfig.load(source)
        stops.formUnion(generation.stopTokenIDs)
        return LanguageModel(model: model, tokenizer: tokenizer, stopTokenIDs: stops, generationDefaults: generation.defaults)
    }
}

/// A model's generation_config.json, read once: its end-of-sequence ids (`eos_token_id`: one id
/// or a list) and its sampling defaults.
enum GenerationConfig {
    static func load(_ source: ModelSource) throws -> (stopTokenIDs: Set<Int32>, defaults: GenerationDefaults) {
        let path = source.path
        guard let data = try source.companionFile(named: "generation_config.json") else { return ([], .none) }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw FormatError("generation_config.json of \(path) is not valid JSON")
        }
        guard let json = object as? [String: Any] else {
            throw FormatError("generation_config.json of \(path) is not a JSON object")
        }
        return (try stopTokenIDs(json, path: path), try GenerationDefaults(json: json, source: "generation_config.json of \(path)"))
    }

    static func stopTokenIDs(_ json: [String: Any], path: String) throws -> Set<Int32> {
        guard let eos = json["eos_token_id"] else { return [] }
        let values: [Any] = (eos as? [Any]) ?? [eos]
        return try Set(values.map { value in
            guard let number = value as? NSNumber, let id = Int32(exactly: number.doubleValue), id >= 0 else {
                throw FormatError("generation_config.json of \(path): eos_token_id holds \(value), not a token id")
            }
            return id
        })
    }
}

/// The sampling settings a model's generation_config.json suggests (`do_sample`, `temperature`,
/// `top_p`, `top_k`, `repetition_penalty`); nil where the file says nothing. `moepack run` and the
/// server use them where the user or the request sets nothing (docs/run.md, docs/serving.md).
public struct GenerationDefaults: Sendable, Equatable {
    public var doSample: Bool?
    public var temperature: Double?
    public var topP: Double?
    public var topK: Int?
    public var repetitionPenalty: Double?

    public init(doSample: Bool? = nil, temperature: Double? = nil, topP: Double? = nil, topK: Int? = nil,
                repetitionPenalty: Double? = nil) {
        self.doSample = doSample
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.repetitionPenalty = repetitionPenalty
    }

    public static let none = GenerationDefaults()

    /// Reads the file's values, each checked against the range sampling accepts.
    public init(json: [String: Any], source: String) throws {
        func number(_ key: String, _ valid: (Double) -> Bool) throws -> Double? {
            guard let raw = json[key], !(raw is NSNull) else { return nil }
            guard let n = raw as? NSNumber, String(cString: n.objCType) != "c", valid(n.doubleValue) else {
                throw FormatError("\(source): \(key) is \(raw), not a valid value")
            }
            return n.doubleValue
        }
        if let raw = json["do_sample"], !(raw is NSNull) {
            guard let n = raw as? NSNumber, String(cString: n.objCType) == "c" else {
                throw FormatError("\(source): do_sample is not true or false")
            }
            doSample = n.boolValue
        }
        temperature = try number("temperature") { $0 >= 0 && $0.isFinite }
        topP = try number("top_p") { $0 > 0 && $0 <= 1 }
        topK = try number("top_k") { $0 >= 0 && $0 <= 1e9 && $0.rounded() == $0 }.map { Int($0) }
        repetitionPenalty = try number("repetition_penalty") { $0 > 0 && $0.isFinite }
    }

    /// What transformers' generate() does with these when the caller sets nothing: greedy unless
    /// do_sample is true; then the file's temperature, top_p and top_k (transformers' own defaults
    /// 1, 1 and 50 where absent); the repetition penalty either way.
    public var transformersSampling: SamplingOptions {
        var options = SamplingOptions.greedy
        if doSample == true {
            options.temperature = temperature ?? 1
            options.topP = topP ?? 1
            options.topK = topK ?? 50
        }
        options.repetitionPenalty = repetitionPenalty ?? 1
        return options
    }
}
