import Foundation
import MoEFormat
import MoETokenizer

/// The tokenizer metadata llama.cpp reads, from the bundle's carried SentencePiece model and
/// tokenizer_config.json, as llama.cpp's converter writes it (`_set_vocab_sentencepiece`):
/// model "llama", pre "default", every piece with its score and type (ids past the model's
/// vocabulary padded as `[PADi]`, score −10000, UNUSED), added tokens of tokenizer_config.json
/// (CONTROL when special, else USER_DEFINED; score −1000), bos/eos/pad ids, add_bos/add_eos,
/// the chat template and add_space_prefix when tokenizer_config.json says them.
enum GGUFTokenizer {
    static func metadata(bundle: BundleFile) throws -> [(String, GGUFValue)] {
        guard let model = try bundle.fileData(named: "tokenizer.model") else {
            throw FormatError("\(bundle.name): the bundle carries no tokenizer.model (SentencePiece), which the GGUF export needs")
        }
        let sp = try SentencePieceTokenizer(modelData: model)
        let vocab = bundle.config.vocabSize
        guard sp.vocabularySize <= vocab else {
            throw FormatError("\(bundle.name): tokenizer.model has \(sp.vocabularySize) pieces, more than vocab_size \(vocab)")
        }
        var tokens: [[UInt8]] = (0..<vocab).map { Array("[PAD\($0)]".utf8) }
        var scores = [Float](repeating: -10000, count: vocab)
        var types = [Int32](repeating: Int32(PieceType.unused.rawValue), count: vocab)
        for id in 0..<sp.vocabularySize {
            let i = Int32(id)
            tokens[id] = Array(sp.piece(for: i).utf8)
            scores[id] = sp.score(for: i) ?? 0
            types[id] = Int32(sp.pieceType(for: i)?.rawValue ?? PieceType.normal.rawValue)
        }
        var config: [String: Any] = [:]
        if let data = try bundle.fileData(named: "tokenizer_config.json") {
            guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw FormatError("\(bundle.name): carried tokenizer_config.json is not a JSON object")
            }
            config = json
        }
        if let added = config["added_tokens_decoder"] as? [String: Any] {
            for (key, value) in added {
                guard let id = Int(key), id >= 0, id < vocab, let entry = value as? [String: Any],
                      let content = entry["content"] as? String else { continue }
                let special = (entry["special"] as? Bool) ?? false
                types[id] = Int32(special ? PieceType.control.rawValue : PieceType.userDefined.rawValue)
                tokens[id] = Array((special ? content : content.replacingOccurrences(of: "\u{2581}", with: " ")).utf8)
                scores[id] = -1000
            }
        }
        var m: [(String, GGUFValue)] = [
            ("tokenizer.ggml.model", .string("llama")),
            ("tokenizer.ggml.pre", .string("default")),
            ("tokenizer.ggml.tokens", .byteStrings(tokens)),
            ("tokenizer.ggml.scores", .float32s(scores)),
            ("tokenizer.ggml.token_type", .int32s(types)),
        ]
        let c = bundle.config
        func id(_ key: String, _ value: Int?) {
            if let value, value >= 0, value < vocab { m.append((key, .uint32(UInt32(value)))) }
        }
        id("tokenizer.ggml.bos_token_id", c.bosTokenID ?? sp.bosID.map(Int.init))
        id("tokenizer.ggml.eos_token_id", c.eosTokenID ?? sp.eosID.map(Int.init))
        id("tokenizer.ggml.padding_token_id", c.padTokenID ?? sp.padID.map(Int.init))
        if let v = config["add_bos_token"] as? Bool { m.append(("tokenizer.ggml.add_bos_token", .bool(v))) }
        if let v = config["add_eos_token"] as? Bool { m.append(("tokenizer.ggml.add_eos_token", .bool(v))) }
        if let v = config["chat_template"] as? String { m.append(("tokenizer.chat_template", .string(v))) }
        if let v = config["add_prefix_space"] as? Bool { m.append(("tokenizer.ggml.add_space_prefix", .bool(v))) }
        return m
    }
}
