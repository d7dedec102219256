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

extension Tokenizer {
    /// The config's template parsed, or why it cannot be (reported when a chat is rendered).
    static func parseTemplate(_ source: String?) -> Result<JinjaTemplate, ChatTemplateError>? {
        guard let source else { return nil }
        do {
            return .success(try JinjaTemplate(source))
        } catch let error as ChatTemplateError {
            return .failure(error)
        } catch {
            return .failure(.runtime("\(error)"))
        }
    }

    /// Whether tokenizer_config.json (or chat_template.jinja) carries a template of its own.
    public var hasModelChatTemplate: Bool { jinjaTemplate != nil }

    /// Renders a conversation as transformers' `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt:)` does: with the model's `chat_template` when its config carries
    /// one, else with the built-in ERNIE format. The template sees `messages`,
    /// `add_generation_prompt`, the named special tokens (`bos_token`, `eos_token`, ...),
    /// `tools` and `documents` as none, and `variables` (for example `enable_thinking`).
    public func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool = true,
                           variables: [String: JinjaValue] = [:]) throws -> String {
        guard let jinjaTemplate else {
            return chatTemplate.render(messages: messages, addGenerationPrompt: addGenerationPrompt)
        }
        let template = try jinjaTemplate.get()
        var context: [String: JinjaValue] = ["messages": .from(messages), "add_generation_prompt": .bool(addGenerationPrompt),
                                             "tools": .none, "documents": .none]
        for (key, token) in namedTokens { context[key] = .string(token) }
        for (key, value) in variables { context[key] = value }
        return try template.render(context)
    }
}
