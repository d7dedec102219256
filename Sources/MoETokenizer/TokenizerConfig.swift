import Foundation

/// What the Hugging Face side files say about special tokens: `tokenizer_config.json`,
/// `special_tokens_map.json` and `added_tokens.json`. Missing files are simply absent.
struct TokenizerConfig: Sendable {
    static let fileNames = ["tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja"]

    /// Named tokens: bos_token, eos_token, pad_token, unk_token, cls_token, sep_token, mask_token.
    var named: [String: String] = [:]
    var additionalSpecial: [String] = []
    /// Added tokens with explicit ids, and whether they are special.
    var added: [(content: String, id: Int32, special: Bool)] = []
    var chatTemplate: String?
    /// tokenizer_config.json's `add_bos_token` and `add_eos_token` (nil when absent).
    var addBOSToken: Bool?
    var addEOSToken: Bool?

    static let namedKeys = ["bos_token", "eos_token", "pad_token", "unk_token", "cls_token", "sep_token", "mask_token"]

    init(files: [String: Data]) throws {
        // special_tokens_map.json first, tokenizer_config.json overrides it (as transformers does).
        for name in ["special_tokens_map.json", "tokenizer_config.json"] {
            guard let data = files[name] else { continue }
            let obj = try Self.object(data, name)
            for key in Self.namedKeys {
                if let v = obj[key], let s = try Self.tokenString(v, "\(name): \(key)") { named[key] = s }
            }
            if let list = obj["additional_special_tokens"] as? [Any] {
                for v in list { if let s = try Self.tokenString(v, "\(name): additional_special_tokens") { additionalSpecial.append(s) } }
            }
            if let dec = obj["added_tokens_decoder"] as? [String: Any] {
                for (key, value) in dec {
                    guard let id = Int32(key), id >= 0 else {
                        throw TokenizerError.invalidConfig("\(name): added_tokens_decoder key \(key) is not an id")
                    }
                    guard let entry = value as? [String: Any], let content = entry["content"] as? String, !content.isEmpty else {
                        throw TokenizerError.invalidConfig("\(name): added_tokens_decoder[\(key)] has no content")
                    }
                    added.append((content, id, (entry["special"] as? Bool) ?? false))
                }
            }
            if let t = obj["chat_template"] as? String {
                chatTemplate = t
            } else if let list = obj["chat_template"] as? [[String: Any]] {
                // Several named templates: the one named "default", as transformers picks it.
                chatTemplate = list.first { ($0["name"] as? String) == "default" }?["template"] as? String
            }
            if name == "tokenizer_config.json" {
                addBOSToken = try Self.flag(obj["add_bos_token"], "\(name): add_bos_token")
                addEOSToken = try Self.flag(obj["add_eos_token"], "\(name): add_eos_token")
            }
        }
        // A chat_template.jinja file (newer hub repositories) replaces the config's template.
        if let data = files["chat_template.jinja"] { chatTemplate = String(decoding: data, as: UTF8.self) }
        if let data = files["added_tokens.json"] {
            let obj = try Self.object(data, "added_tokens.json")
            for (content, v) in obj {
                guard let n = v as? NSNumber, let id = Int32(exactly: n.int64Value), id >= 0, !content.isEmpty else {
                    throw TokenizerError.invalidConfig("added_tokens.json: bad id for \(content)")
                }
                if !added.contains(where: { $0.content == content }) { added.append((content, id, false)) }
            }
        }
        added.sort { $0.id < $1.id }
    }

    private static func object(_ data: Data, _ name: String) throws -> [String: Any] {
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw TokenizerError.invalidConfig("\(name) is not valid JSON: \(error.localizedDescription)")
        }
        guard let obj = parsed as? [String: Any] else {
            throw TokenizerError.invalidConfig("\(name) is not a JSON object")
        }
        return obj
    }

    private static func flag(_ v: Any?, _ what: String) throws -> Bool? {
        guard let v, !(v is NSNull) else { return nil }
        guard let n = v as? NSNumber, String(cString: n.objCType) == "c" else {
            throw TokenizerError.invalidConfig("\(what) is not true or false")
        }
        return n.boolValue
    }

    /// A token is written as a string, as {"content": ...}, or as null.
    private static func tokenString(_ v: Any, _ what: String) throws -> String? {
        if v is NSNull { return nil }
        if let s = v as? String { return s.isEmpty ? nil : s }
        if let d = v as? [String: Any], let s = d["content"] as? String { return s.isEmpty ? nil : s }
        throw TokenizerError.invalidConfig("\(what) is neither a string nor a token object")
    }
}
