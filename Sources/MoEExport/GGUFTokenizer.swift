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
    /// `bpePre`: the pre-tokenizer name a byte-level BPE tokenizer.json is written with, for
    /// families that ship one (nil: SentencePiece only).
    static func metadata(bundle: BundleFile, bpePre: String? = nil) throws -> [(String, GGUFValue)] {
        if let pre = bpePre, try bundle.fileData(named: "tokenizer.model") == nil, let json = try bundle.fileData(named: "tokenizer.json") {
            return try byteLevelBPE(bundle: bundle, json: json, pre: pre)
        }
        guard let model = try bundle.fileData(named: "tokenizer.model") else {
            throw FormatError("\(bundle.name): the bundle carries no tokenizer.model (SentencePiece)"
                              + (bpePre == nil ? "" : " or byte-level BPE tokenizer.json") + ", which the GGUF export needs")
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
        let config = try tokenizerConfig(bundle)
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
        m += common(bundle, config, bos: sp.bosID.map(Int.init), eos: sp.eosID.map(Int.init), pad: sp.padID.map(Int.init))
        if let v = config["add_prefix_space"] as? Bool { m.append(("tokenizer.ggml.add_space_prefix", .bool(v))) }
        return m
    }

    static func tokenizerConfig(_ bundle: BundleFile) throws -> [String: Any] {
        guard let data = try bundle.fileData(named: "tokenizer_config.json") else { return [:] }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw FormatError("\(bundle.name): carried tokenizer_config.json is not a JSON object")
        }
        return json
    }

    /// Special ids (config.json first), add_bos/add_eos and the chat template.
    static func common(_ bundle: BundleFile, _ config: [String: Any], bos: Int?, eos: Int?, pad: Int?) -> [(String, GGUFValue)] {
        let c = bundle.config
        var m: [(String, GGUFValue)] = []
        func id(_ key: String, _ value: Int?) {
            if let value, value >= 0, value < c.vocabSize { m.append((key, .uint32(UInt32(value)))) }
        }
        id("tokenizer.ggml.bos_token_id", c.bosTokenID ?? bos)
        id("tokenizer.ggml.eos_token_id", c.eosTokenID ?? eos)
        id("tokenizer.ggml.padding_token_id", c.padTokenID ?? pad)
        if let v = config["add_bos_token"] as? Bool { m.append(("tokenizer.ggml.add_bos_token", .bool(v))) }
        if let v = config["add_eos_token"] as? Bool { m.append(("tokenizer.ggml.add_eos_token", .bool(v))) }
        if let v = config["chat_template"] as? String { m.append(("tokenizer.chat_template", .string(v))) }
        return m
    }

    /// A byte-level BPE tokenizer.json as llama.cpp's converter writes it (`_set_vocab_gpt2`):
    /// model "gpt2", the family's pre-tokenizer name, every id's token in its byte-level
    /// spelling (ids without one as `[PADi]`, UNUSED), added tokens CONTROL when special else
    /// USER_DEFINED, the merges as "left right".
    static func byteLevelBPE(bundle: BundleFile, json: Data, pre: String) throws -> [(String, GGUFValue)] {
        guard let root = try? JSONSerialization.jsonObject(with: json) as? [String: Any],
              let model = root["model"] as? [String: Any], (model["type"] as? String) == "BPE",
              let vocabMap = model["vocab"] as? [String: Any], let rawMerges = model["merges"] as? [Any] else {
            throw FormatError("\(bundle.name): carried tokenizer.json is not a BPE tokenizer with a vocabulary and merges")
        }
        let vocab = bundle.config.vocabSize
        var tokens: [[UInt8]] = (0..<vocab).map { Array("[PAD\($0)]".utf8) }
        var types = [Int32](repeating: Int32(PieceType.unused.rawValue), count: vocab)
        for (token, value) in vocabMap {
            guard let id = (value as? NSNumber)?.intValue, id >= 0, id < vocab else {
                throw FormatError("\(bundle.name): tokenizer.json token \(token.prefix(32)) has an id outside the vocabulary of \(vocab)")
            }
            tokens[id] = Array(token.utf8)
            types[id] = Int32(PieceType.normal.rawValue)
        }
        for case let added as [String: Any] in root["added_tokens"] as? [Any] ?? [] {
            guard let id = (added["id"] as? NSNumber)?.intValue, id >= 0, id < vocab, let content = added["content"] as? String else { continue }
            tokens[id] = Array(content.utf8)
            types[id] = Int32(((added["special"] as? Bool) ?? false) ? PieceType.control.rawValue : PieceType.userDefined.rawValue)
        }
        let merges: [[UInt8]] = try rawMerges.map { merge in
            if let text = merge as? String { return Array(text.utf8) }
            if let pair = merge as? [String], pair.count == 2 { return Array("\(pair[0]) \(pair[1])".utf8) }
            throw FormatError("\(bundle.name): tokenizer.json has a merge that is neither \"a b\" nor a pair")
        }
        var m: [(String, GGUFValue)] = [
            ("tokenizer.ggml.model", .string("gpt2")),
            ("tokenizer.ggml.pre", .string(pre)),
            ("tokenizer.ggml.tokens", .byteStrings(tokens)),
            ("tokenizer.ggml.token_type", .int32s(types)),
            ("tokenizer.ggml.merges", .byteStrings(merges)),
        ]
        m += common(bundle, try tokenizerConfig(bundle), bos: nil, eos: nil, pad: nil)
        return m
    }
}
