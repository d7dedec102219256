import Foundation

/// What a `tokenizer.json` (the `tokenizers` library's file) says, restricted to byte-level BPE:
/// the one pipeline Qwen2/Qwen3, Llama-3 and GPT-2 style files use. Anything else is refused with
/// the name of the component, so a file is never half understood.
struct TokenizerJSON: Sendable {
    var nfc = false
    /// The Split pre-tokenizer's pattern, or the ByteLevel pre-tokenizer's own (GPT-2) regex.
    var pattern: SplitPattern?
    /// The GPT-2 ByteLevel pre-tokenizer's `add_prefix_space`: a space before each text piece
    /// (between added tokens) that does not start with one.
    var addPrefixSpace = false
    var vocab: [String: Int32] = [:]
    var merges: [(String, String)] = []
    var ignoreMerges = false
    var unkToken: String?
    var added: [AddedToken] = []
    /// Token strings the post-processor puts before and after a single sequence.
    var prefixTokens: [String] = []
    var suffixTokens: [String] = []

    init(data: Data) throws {
        let root: [String: Any]
        do {
            guard let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw TokenizerError.invalidModel("tokenizer.json is not a JSON object")
            }
            root = obj
        } catch let e as TokenizerError {
            throw e
        } catch {
            throw TokenizerError.invalidModel("tokenizer.json is not valid JSON: \(error.localizedDescription)")
        }
        try readModel(root["model"])
        try readNormalizer(root["normalizer"])
        try readPreTokenizer(root["pre_tokenizer"])
        try readDecoder(root["decoder"])
        try readPostProcessor(root["post_processor"])
        try readAdded(root["added_tokens"])
    }

    private static func unsupported(_ what: String) -> TokenizerError {
        .unsupportedModel("tokenizer.json: \(what) (supported: byte-level BPE with an NFC or no normalizer, "
                          + "a Split pre-tokenizer with the Qwen2, Llama-3 or GPT-2 regex, and the ByteLevel decoder)")
    }

    private static func isNull(_ v: Any?) -> Bool { v == nil || v is NSNull }

    private mutating func readModel(_ v: Any?) throws {
        guard let m = v as? [String: Any] else { throw TokenizerError.invalidModel("tokenizer.json has no model") }
        guard (m["type"] as? String) == "BPE" else { throw Self.unsupported("model type \(m["type"] ?? "none")") }
        if !Self.isNull(m["dropout"]) { throw Self.unsupported("BPE dropout") }
        if (m["byte_fallback"] as? Bool) == true { throw Self.unsupported("BPE byte_fallback") }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let s = m[key] as? String, !s.isEmpty { throw Self.unsupported("BPE \(key) \"\(s)\"") }
        }
        ignoreMerges = (m["ignore_merges"] as? Bool) ?? false
        unkToken = m["unk_token"] as? String
        guard let vocabObj = m["vocab"] as? [String: Any] else { throw TokenizerError.invalidModel("tokenizer.json: model.vocab is missing") }
        vocab.reserveCapacity(vocabObj.count)
        for (piece, idValue) in vocabObj {
            guard let n = idValue as? NSNumber, let id = Int32(exactly: n.doubleValue), id >= 0 else {
                throw TokenizerError.invalidModel("tokenizer.json: vocab id of \(piece.debugDescription) is not an id")
            }
            vocab[piece] = id
        }
        guard let list = m["merges"] as? [Any] else { throw TokenizerError.invalidModel("tokenizer.json: model.merges is missing") }
        merges.reserveCapacity(list.count)
        for (rank, entry) in list.enumerated() {
            if let s = entry as? String {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw TokenizerError.invalidModel("tokenizer.json: merge \(rank) \(s.debugDescription) is not two pieces") }
                merges.append((String(parts[0]), String(parts[1])))
            } else if let pair = entry as? [String], pair.count == 2 {
                merges.append((pair[0], pair[1]))
            } else {
                throw TokenizerError.invalidModel("tokenizer.json: merge \(rank) is neither \"a b\" nor [a, b]")
            }
        }
    }

    private mutating func readNormalizer(_ v: Any?) throws {
        if Self.isNull(v) { return }
        guard let n = v as? [String: Any], let type = n["type"] as? String else { throw TokenizerError.invalidModel("tokenizer.json: bad normalizer") }
        switch type {
        case "NFC": nfc = true
        case "Sequence":
            for item in (n["normalizers"] as? [Any]) ?? [] { try readNormalizer(item) }
        default: throw Self.unsupported("normalizer \(type)")
        }
    }

    private mutating func readPreTokenizer(_ v: Any?) throws {
        guard let p = v as? [String: Any], let type = p["type"] as? String else { throw Self.unsupported("no pre-tokenizer") }
        switch type {
        case "Sequence":
            let items = (p["pretokenizers"] as? [Any]) ?? []
            guard items.count == 2, let first = items[0] as? [String: Any], (first["type"] as? String) == "Split",
                  let second = items[1] as? [String: Any], (second["type"] as? String) == "ByteLevel",
                  (second["use_regex"] as? Bool) == false else {
                throw Self.unsupported("pre-tokenizer sequence \(items.compactMap { ($0 as? [String: Any])?["type"] as? String })")
            }
            try readSplit(first)
            if (second["add_prefix_space"] as? Bool) == true { throw Self.unsupported("ByteLevel add_prefix_space after a Split") }
        case "ByteLevel":
            guard (p["use_regex"] as? Bool) ?? true else { throw Self.unsupported("ByteLevel pre-tokenizer without a regex and without a Split") }
            pattern = .gpt2
            addPrefixSpace = (p["add_prefix_space"] as? Bool) ?? true
        default:
            throw Self.unsupported("pre-tokenizer \(type)")
        }
    }

    private mutating func readSplit(_ p: [String: Any]) throws {
        guard let pat = p["pattern"] as? [String: Any], let regex = pat["Regex"] as? String else {
            throw Self.unsupported("Split pre-tokenizer with a string pattern")
        }
        guard let known = SplitPattern(source: regex) else { throw Self.unsupported("Split regex \(regex.debugDescription)") }
        guard (p["behavior"] as? String) == "Isolated" else { throw Self.unsupported("Split behavior \(p["behavior"] ?? "none")") }
        guard (p["invert"] as? Bool) != true else { throw Self.unsupported("inverted Split") }
        pattern = known
    }

    private func readDecoder(_ v: Any?) throws {
        guard let d = v as? [String: Any], (d["type"] as? String) == "ByteLevel" else {
            throw Self.unsupported("decoder \((v as? [String: Any])?["type"] ?? "none")")
        }
    }

    private mutating func readPostProcessor(_ v: Any?) throws {
        if Self.isNull(v) { return }
        guard let p = v as? [String: Any], let type = p["type"] as? String else { throw TokenizerError.invalidModel("tokenizer.json: bad post_processor") }
        switch type {
        case "ByteLevel": return
        case "Sequence":
            for item in (p["processors"] as? [Any]) ?? [] { try readPostProcessor(item) }
        case "TemplateProcessing":
            guard let single = p["single"] as? [[String: Any]] else { throw TokenizerError.invalidModel("tokenizer.json: TemplateProcessing without single") }
            var seenSequence = false
            for piece in single {
                if let special = piece["SpecialToken"] as? [String: Any], let id = special["id"] as? String {
                    if seenSequence { suffixTokens.append(id) } else { prefixTokens.append(id) }
                } else if piece["Sequence"] != nil {
                    seenSequence = true
                }
            }
        default:
            throw Self.unsupported("post-processor \(type)")
        }
    }

    private mutating func readAdded(_ v: Any?) throws {
        for item in (v as? [Any]) ?? [] {
            guard let t = item as? [String: Any], let content = t["content"] as? String, !content.isEmpty,
                  let n = t["id"] as? NSNumber, let id = Int32(exactly: n.doubleValue), id >= 0 else {
                throw TokenizerError.invalidModel("tokenizer.json: an added token has no content or id")
            }
            added.append(AddedToken(content: content, id: id, special: (t["special"] as? Bool) ?? false,
                                    lstrip: (t["lstrip"] as? Bool) ?? false, rstrip: (t["rstrip"] as? Bool) ?? false,
                                    singleWord: (t["single_word"] as? Bool) ?? false,
                                    normalized: (t["normalized"] as? Bool) ?? !((t["special"] as? Bool) ?? false)))
        }
    }
}
