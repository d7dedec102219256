import Foundation

/// A tokenizer model together with the special tokens from the Hugging Face config files and the
/// chat template. The model is SentencePiece (`tokenizer.model`) or byte-level BPE
/// (`tokenizer.json`); the runtime and the server use either through this type.
public struct Tokenizer: Sendable {
    /// The segmentation model a directory or bundle carries.
    public enum Model: Sendable {
        case sentencePiece(SentencePieceTokenizer)
        case byteLevelBPE(ByteLevelBPETokenizer)
    }

    public let model: Model
    /// The built-in ERNIE format, used when tokenizer_config.json carries no `chat_template`.
    public let chatTemplate: ChatTemplate
    /// tokenizer_config.json's `chat_template`, parsed (or why it could not be), when present.
    let jinjaTemplate: Result<JinjaTemplate, ChatTemplateError>?
    /// Named special tokens as strings (bos_token, eos_token, ...), given to the chat template.
    let namedTokens: [String: String]

    /// Token text for each special or added id (ids may lie beyond the SentencePiece vocabulary).
    let tokenText: [Int32: String]
    /// Ids skipped by `decode(_:skipSpecialTokens: true)`.
    let specialIDs: Set<Int32>
    /// Longest-match lookup of special and added token strings while encoding (SentencePiece).
    let matcher: ByteTrie

    public let bosID: Int32?
    public let eosID: Int32?
    public let padID: Int32?
    public let unkID: Int32?
    /// Ids that end a generated reply: eos and, when present, the sep token and the special
    /// token that closes an assistant turn in the chat template (`<|end_of_sentence|>`).
    public let stopIDs: Set<Int32>
    /// Whether a prompt starts with BOS and ends with EOS: tokenizer_config.json's `add_bos_token`
    /// and `add_eos_token`. Absent, both are false for SentencePiece, as transformers loads ERNIE
    /// 4.5 tokenizers (the hub's ERNIE tokenizers never add BOS); for tokenizer.json they follow
    /// its post-processor (Llama-3's TemplateProcessing adds `<|begin_of_text|>`, Qwen's adds nothing).
    public let addsBOS: Bool
    public let addsEOS: Bool
    /// The ids `encodePrompt` puts around the text.
    let promptPrefix: [Int32]
    let promptSuffix: [Int32]

    /// The SentencePiece model, when that is what this tokenizer uses.
    public var sentencePiece: SentencePieceTokenizer? {
        if case .sentencePiece(let sp) = model { return sp }
        return nil
    }

    /// The byte-level BPE model, when that is what this tokenizer uses.
    public var byteLevelBPE: ByteLevelBPETokenizer? {
        if case .byteLevelBPE(let bpe) = model { return bpe }
        return nil
    }

    /// The optional side files read next to `tokenizer.model` or `tokenizer.json`.
    public static let configFileNames = TokenizerConfig.fileNames
    /// The model files, in the order a directory or bundle is searched for them: SentencePiece
    /// first (a directory with both, such as Llama 2's, keeps the SentencePiece model).
    public static let modelFileNames = ["tokenizer.model", "tokenizer.json"]

    /// Loads `tokenizer.model` or else `tokenizer.json` and, when present, `tokenizer_config.json`,
    /// `special_tokens_map.json` and `added_tokens.json` from `directory`.
    public init(directory: URL) throws {
        var files: [String: Data] = [:]
        for name in Self.modelFileNames + TokenizerConfig.fileNames {
            let url = directory.appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: url.path) { files[name] = try Data(contentsOf: url) }
        }
        guard files["tokenizer.model"] != nil || files["tokenizer.json"] != nil else {
            throw TokenizerError.fileNotFound(directory.appendingPathComponent("tokenizer.model").path + " (nor tokenizer.json)")
        }
        try self.init(files: files)
    }

    /// Builds a tokenizer from files keyed by name, as a bundle carries them: `tokenizer.model`
    /// or `tokenizer.json`, and the optional JSON side files.
    public init(files: [String: Data]) throws {
        let config = files.filter { TokenizerConfig.fileNames.contains($0.key) }
        if let model = files["tokenizer.model"] {
            try self.init(modelData: model, configFiles: config)
        } else if let json = files["tokenizer.json"] {
            try self.init(byteLevelBPE: ByteLevelBPETokenizer(data: json), configFiles: config)
        } else {
            throw TokenizerError.fileNotFound("neither tokenizer.model nor tokenizer.json")
        }
    }

    /// Builds a tokenizer from the bytes of `tokenizer.model` and of the optional JSON files,
    /// keyed by file name (for bundles that embed them).
    public init(modelData: Data, configFiles: [String: Data]) throws {
        try self.init(sentencePiece: SentencePieceTokenizer(modelData: modelData), configFiles: configFiles)
    }

    /// A parsed SentencePiece model with the optional JSON files (one model, several configs).
    public init(sentencePiece sp: SentencePieceTokenizer, configFiles: [String: Data]) throws {
        let config = try TokenizerConfig(files: configFiles)
        model = .sentencePiece(sp)

        var text: [Int32: String] = [:]
        var special = Set<Int32>()
        var idOf: [String: Int32] = [:]
        for t in config.added {
            text[t.id] = t.content
            idOf[t.content] = t.id
            if t.special { special.insert(t.id) }
        }
        // Named and additional special tokens: ids from the added tokens, else from the model.
        func resolve(_ s: String) -> Int32? {
            if let id = idOf[s] { return id }
            let id = sp.id(for: s)
            return sp.piece(for: id) == s ? id : nil
        }
        var namedIDs: [String: Int32] = [:]
        for (key, s) in config.named {
            guard let id = resolve(s) else { continue }
            namedIDs[key] = id
            text[id] = s
            idOf[s] = id
            special.insert(id)
        }
        for s in config.additionalSpecial {
            guard let id = resolve(s) else { continue }
            text[id] = s
            idOf[s] = id
            special.insert(id)
        }
        tokenText = text
        specialIDs = special
        matcher = ByteTrie(entries: idOf.map { (Array($0.key.utf8), $0.value) })

        bosID = namedIDs["bos_token"] ?? sp.bosID
        eosID = namedIDs["eos_token"] ?? sp.eosID
        padID = namedIDs["pad_token"] ?? sp.padID
        unkID = namedIDs["unk_token"] ?? sp.unkID
        let template = ChatTemplate(beginToken: config.named["cls_token"] ?? ChatTemplate.ernie.beginToken,
                                    endToken: config.named["sep_token"] ?? ChatTemplate.ernie.endToken)
        chatTemplate = template
        jinjaTemplate = Self.parseTemplate(config.chatTemplate)
        namedTokens = config.named
        // The token closing an assistant turn ends generation too, when the model knows it.
        let endOfTurn = idOf[template.endToken].flatMap { special.contains($0) ? $0 : nil }
        stopIDs = Set([eosID, namedIDs["sep_token"], endOfTurn].compactMap { $0 })
        addsBOS = config.addBOSToken ?? false
        addsEOS = config.addEOSToken ?? false
        promptPrefix = addsBOS ? [bosID].compactMap { $0 } : []
        promptSuffix = addsEOS ? [eosID].compactMap { $0 } : []
    }

    /// Size of the id space: the model's pieces plus added tokens beyond them.
    public var vocabularySize: Int {
        max(modelVocabularySize, Int((tokenText.keys.max() ?? -1) + 1))
    }

    /// The pieces of the model itself (SentencePiece pieces; for tokenizer.json, vocabulary and
    /// added tokens).
    public var modelVocabularySize: Int {
        switch model {
        case .sentencePiece(let sp): return sp.vocabularySize
        case .byteLevelBPE(let bpe): return bpe.vocabularySize
        }
    }

    /// The id of a special or added token string, if there is one.
    public func specialTokenID(_ token: String) -> Int32? {
        if let bpe = byteLevelBPE {
            guard let id = bpe.id(for: token), tokenText[id] != nil || specialIDs.contains(id) else { return nil }
            return id
        }
        return matcher.lookup(Array(token.utf8))
    }

    /// Encodes `text`. With `parseSpecialTokens`, special and added token strings in the text
    /// (such as `<|begin_of_sentence|>`) become their ids and the text between them is encoded
    /// piece by piece; without it the whole text is plain.
    public func encode(_ text: String, addBOS: Bool = false, parseSpecialTokens: Bool = true) -> [Int32] {
        var out: [Int32] = []
        if addBOS, let bosID { out.append(bosID) }
        let sentencePiece: SentencePieceTokenizer
        switch model {
        case .byteLevelBPE(let bpe):
            return out + bpe.encode(text, parseSpecialTokens: parseSpecialTokens)
        case .sentencePiece(let sp):
            sentencePiece = sp
        }
        guard parseSpecialTokens, !matcher.isEmpty else {
            out += sentencePiece.encode(text)
            return out
        }
        let bytes = Array(text.utf8)
        bytes.withUnsafeBufferPointer { buf in
            var segmentStart = 0
            var i = 0
            func flush(_ end: Int) {
                if end > segmentStart {
                    out += sentencePiece.encode(String(decoding: buf[segmentStart..<end], as: UTF8.self))
                }
            }
            while i < buf.count {
                let n = matcher.longestPrefix(buf, from: i, to: buf.count)
                if n > 0, let id = matcher.lookup(buf, i..<(i + n)) {
                    flush(i)
                    out.append(id)
                    i += n
                    segmentStart = i
                } else {
                    i += 1
                }
            }
            flush(buf.count)
        }
        return out
    }

    /// A prompt as transformers' tokenizer gives it (`add_special_tokens`): BOS first and EOS
    /// last as `addsBOS` and `addsEOS` say, special-token text parsed.
    public func encodePrompt(_ text: String) -> [Int32] {
        promptPrefix + encode(text, addBOS: false, parseSpecialTokens: true) + promptSuffix
    }

    /// Decodes ids. Special tokens are dropped with `skipSpecialTokens`, otherwise written as
    /// their text; the ids between them decode as SentencePiece does.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = false) -> String {
        let sentencePiece: SentencePieceTokenizer
        switch model {
        case .byteLevelBPE(let bpe):
            return bpe.decode(skipSpecialTokens ? ids.filter { !specialIDs.contains($0) } : ids)
        case .sentencePiece(let sp):
            sentencePiece = sp
        }
        var result = ""
        var run: [Int32] = []
        for id in ids {
            if let t = tokenText[id] {
                if specialIDs.contains(id) && skipSpecialTokens { continue }
                result += sentencePiece.decode(run)
                run.removeAll(keepingCapacity: true)
                result += t
            } else {
                run.append(id)
            }
        }
        return result + sentencePiece.decode(run)
    }

    /// The bytes one token stands for in a text (special and added tokens: their text); see
    /// `SentencePieceTokenizer.bytes(of:)`.
    public func tokenBytes(_ id: Int32) -> [UInt8] {
        switch model {
        case .byteLevelBPE(let bpe): return bpe.bytes(of: id)
        case .sentencePiece(let sp):
            if let text = tokenText[id] { return Array(text.utf8) }
            return sp.bytes(of: id)
        }
    }

    /// Renders `messages` with the chat template and encodes the result, special tokens parsed.
    public func encodeChat(_ messages: [ChatMessage], addGenerationPrompt: Bool = true,
                           variables: [String: JinjaValue] = [:]) throws -> [Int32] {
        encode(try renderChat(messages, addGenerationPrompt: addGenerationPrompt, variables: variables))
    }

    /// A decoder for generated ids that yields text as soon as it is complete.
    public func makeStreamingDecoder(skipSpecialTokens: Bool = true) -> StreamingDecoder {
        StreamingDecoder(tokenizer: self, skipSpecialTokens: skipSpecialTokens)
    }
}
