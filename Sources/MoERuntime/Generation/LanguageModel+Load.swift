import Foundation
import MoEFormat
import MoETokenizer

extension LanguageModel {
    /// Loads the model and its tokenizer from a MODEL path: a checkpoint directory with
    /// tokenizer.model and the Hugging Face tokenizer JSON files next to the weights, or a bundle
    /// that carries them. `cachePrecision` overrides how the model's KV caches store keys and
    /// values (`ErnieModel.cachePrecision`).
    public static func load(at path: String, cachePrecision: KVCache.Precision? = nil) throws -> LanguageModel {
        let model = try ModelLoader.model(at: path, cachePrecision: cachePrecision)
        let tokenizer = try ModelLoader.tokenizer(at: path)
        // Pieces plus added tokens must fit the embedding (ERNIE 4.5: 100,295 pieces and about
        // 1,000 added tokens in 103,424 rows); an id beyond it would be refused mid-request.
        let vocabulary = tokenizer.vocabularySize, rows = model.config.vocabSize
        guard vocabulary <= rows else {
            throw FormatError("\(path): the tokenizer has \(vocabulary) ids (\(tokenizer.sentencePiece.vocabularySize) pieces "
                              + "and added tokens up to id \(vocabulary - 1)), but the model's embedding has only \(rows) rows: "
                              + "the tokenizer files do not belong to this model")
        }
        var stops = tokenizer.stopTokenIDs
        if let eos = model.config.eosTokenID, let id = Int32(exactly: eos) { stops.insert(id) }
        stops.formUnion(try GenerationConfig.stopTokenIDs(at: path))
        return LanguageModel(model: model, tokenizer: tokenizer, stopTokenIDs: stops)
    }
}

/// The end-of-sequence ids of a model's generation_config.json (`eos_token_id`: one id or a list).
enum GenerationConfig {
    static func stopTokenIDs(at path: String) throws -> Set<Int32> {
        guard let data = try ModelLoader.companionFile(named: "generation_config.json", at: path) else { return [] }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw FormatError("generation_config.json of \(path) is not valid JSON")
        }
        guard let json = object as? [String: Any], let eos = json["eos_token_id"] else { return [] }
        let values: [Any] = (eos as? [Any]) ?? [eos]
        return try Set(values.map { value in
            guard let number = value as? NSNumber, let id = Int32(exactly: number.doubleValue), id >= 0 else {
                throw FormatError("generation_config.json of \(path): eos_token_id holds \(value), not a token id")
            }
            return id
        })
    }
}
