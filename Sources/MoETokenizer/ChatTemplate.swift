/// One chat turn. Roles are "system", "user" and "assistant"; others are ignored by the template.
public struct ChatMessage: Sendable, Equatable, Codable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// The ERNIE 4.5 chat format, equivalent to the Jinja template shipped in its tokenizer_config.json:
/// `<|begin_of_sentence|>` once, then per message: system `{content}\n`, user `User: {content}\n`,
/// assistant `Assistant: {content}<|end_of_sentence|>`; the generation prompt is `Assistant: `.
public struct ChatTemplate: Sendable, Equatable {
    /// Written once at the start (the tokenizer's cls_token).
    public var beginToken: String
    /// Written after each assistant reply (the tokenizer's sep_token).
    public var endToken: String

    public init(beginToken: String, endToken: String) {
        self.beginToken = beginToken
        self.endToken = endToken
    }

    public static let ernie = ChatTemplate(beginToken: "<|begin_of_sentence|>", endToken: "<|end_of_sentence|>")

    public func render(messages: [ChatMessage], addGenerationPrompt: Bool = true) -> String {
        var s = beginToken
        for m in messages {
            switch m.role {
            case "user": s += "User: " + m.content + "\n"
            case "assistant": s += "Assistant: " + m.content + endToken
            case "system": s += m.content + "\n"
            default: continue
            }
        }
        if addGenerationPrompt { s += "Assistant: " }
        return s
    }
}
