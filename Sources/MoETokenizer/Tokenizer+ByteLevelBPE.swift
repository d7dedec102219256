import Foundation

extension Tokenizer {
    /// A parsed tokenizer.json with the optional JSON side files. The added tokens and their
    /// flags come from tokenizer.json (tokenizer_config.json's `added_tokens_decoder` repeats
    /// them); the side files name the special tokens and carry the chat template.
    public init(byteLevelBPE bpe: ByteLevelBPETokenizer, configFiles: [String: Data]) throws {
        let config = try TokenizerConfig(files: configFiles)
        model = .byteLevelBPE(bpe)
        var special = Set(bpe.addedTokens.keys.filter { bpe.isSpecial($0) })
        var namedIDs: [String: Int32] = [:]
        for (key, s) in config.named {
            guard let id = bpe.id(for: s) else { continue }
            namedIDs[key] = id
            special.insert(id)
        }
        for s in config.additionalSpecial { if let id = bpe.id(for: s) { special.insert(id) } }
        tokenText = bpe.addedTokens
        specialIDs = special
        matcher = ByteTrie()
        bosID = namedIDs["bos_token"] ?? bpe.prefixIDs.first
        eosID = namedIDs["eos_token"]
        padID = namedIDs["pad_token"]
        unkID = namedIDs["unk_token"]
        chatTemplate = ChatTemplate(beginToken: config.named["cls_token"] ?? ChatTemplate.ernie.beginToken,
                                    endToken: config.named["sep_token"] ?? ChatTemplate.ernie.endToken)
        jinjaTemplate = Self.parseTemplate(config.chatTemplate)
        namedTokens = config.named
        stopIDs = Set([eosID, namedIDs["sep_token"]].compactMap { $0 })
        // tokenizer_config.json's flags, when given, decide (as LlamaTokenizerFast applies them);
        // otherwise the post-processor's template does.
        if let flag = config.addBOSToken {
            promptPrefix = flag ? [bosID].compactMap { $0 } : []
        } else {
            promptPrefix = bpe.prefixIDs
        }
        if let flag = config.addEOSToken {
            promptSuffix = flag ? [eosID].compactMap { $0 } : []
        } else {
            promptSuffix = bpe.suffixIDs
        }
        addsBOS = !promptPrefix.isEmpty
        addsEOS = !promptSuffix.isEmpty
    }
}
