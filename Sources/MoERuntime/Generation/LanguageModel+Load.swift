import Foundation
import MoEFormat
import MoETokenizer

extension LanguageModel {
    /// Loads the model and its tokenizer from a MODEL path (a checkpoint directory with
    /// tokenizer.model and the Hugging Face tokenizer JSON files next to the weights).
    public static func load(at path: String) throws -> LanguageModel {
        let model = try ModelLoader.model(at: path)
        let tokenizer = try TokenizerLoader.tokenizer(at: path)
        var stops = tokenizer.stopTokenIDs
        if let eos = model.config.eosTokenID, let id = Int32(exactly: eos) { stops.insert(id) }
        stops.formUnion(try GenerationConfig.stopTokenIDs(at: path))
        return LanguageModel(model: model, tokenizer: tokenizer, stopTokenIDs: stops)
    }
}

/// Finds the tokenizer that belongs to a MODEL path.
public enum TokenizerLoader {
    /// A checkpoint directory's tokenizer, or the one a bundle carries.
    public static func tokenizer(at path: String) throws -> Tokenizer {
        try ModelLoader.tokenizer(at: path)
    }
}

/// The end-of-sequence ids of a checkpoint's generation_config.json (`eos_token_id`: one id or a list).
enum GenerationConfig {
    static func stopTokenIDs(at path: String) throws -> Set<Int32> {
        let url = URL(fileURLWithPath: path).appendingPathComponent("generation_config.json")
        let data: Data
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
            guard let carried = try BundleFile(path: path).fileData(named: "generation_config.json") else { return [] }
            data = carried
        } else {
            guard FileManager.default.fileExists(atPath: url.path) else { return [] }
            data = try Data(contentsOf: url)
        }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw FormatError("\(url.path) is not valid JSON")
        }
        guard let json = object as? [String: Any], let eos = json["eos_token_id"] else { return [] }
        let values: [Any] = (eos as? [Any]) ?? [eos]
        return try Set(values.map { value in
            guard let number = value as? NSNumber, let id = Int32(exactly: number.doubleValue), id >= 0 else {
                throw FormatError("\(url.path): eos_token_id holds \(value), not a token id")
            }
            return id
        })
    }
}
