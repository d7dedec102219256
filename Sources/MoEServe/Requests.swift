import Foundation
import MoERuntime
import MoETokenizer

/// What a completion prompt can be: text, or token ids the client already has.
enum PromptInput: Sendable, Equatable {
    case text(String)
    case tokens([Int32])
}

/// Settings shared by /v1/completions and /v1/chat/completions, validated.
struct CommonParameters: Sendable {
    var model: String
    var stream = false
    var includeUsageInStream = false
    /// nil: as many as the context allows, up to the server's default.
    var maxTokens: Int?
    var sampling = SamplingOptions(temperature: 1)
    var stop: [String] = []
    /// Non-standard (as in vLLM): keep generating past end-of-sequence, for benchmarks.
    var ignoreEOS = false
    /// Report each generated token's log-probability with this many most likely alternatives
    /// (nil: no log-probabilities).
    var logprobs: Int?
    /// Completions only: the answer starts with the prompt (with `logprobs`, scored token by token).
    var echo = false
    /// `n`: choices generated for the prompt.
    var choices = 1
}

struct CompletionRequest: Sendable {
    var parameters: CommonParameters
    /// One or more prompts (OpenAI's batch form), each answered with `n` choices.
    var prompts: [PromptInput]
}

struct ChatRequest: Sendable {
    var parameters: CommonParameters
    var messages: [ChatMessage]
    /// `chat_template_kwargs` (as vLLM takes them): extra variables for the chat template.
    var templateVariables: [String: JSONValue] = [:]

    /// The variables as the template engine takes them.
    var jinjaVariables: [String: JinjaValue] {
        templateVariables.mapValues { value in
            switch value {
            case .bool(let b): .bool(b)
            case .int(let i): .int(i)
            case .double(let d): .double(d)
            case .string(let s): .string(s)
            default: JinjaValue.none
            }
        }
    }
}

extension CompletionRequest {
    init(json: JSONValue, vocabularySize: Int, defaults: GenerationDefaults = .none) throws {
        let fields = try FieldReader(json)
        let echo = try fields.bool("echo") ?? false
        // With echo, max_tokens 0 scores a prompt without generating (as OpenAI's legacy API allowed).
        parameters = try CommonParameters(fields, maxTokensKeys: ["max_tokens"], minimumMaxTokens: echo ? 0 : 1,
                                          defaults: defaults)
        parameters.echo = echo
        try fields.requireUnset("suffix", "is not supported")
        try fields.requireUnset("best_of", allowing: .int(1), "must be 1: only one candidate is generated")
        if let count = try fields.int("logprobs") {
            guard count >= 0, count <= 5 else { throw APIError.invalidValue("logprobs", "must be between 0 and 5 (got \(count))") }
            parameters.logprobs = count
        }
        guard let value = fields["prompt"], value != .null else {
            throw APIError.invalidRequest("'prompt' is required", param: "prompt", code: "missing_required_parameter")
        }
        func tokenList(_ items: [JSONValue]) throws -> [Int32] {
            let ids = try items.map { item -> Int32 in
                guard case .int(let id) = item else {
                    throw APIError.invalidRequest("'prompt' must be a string, an array of strings, an array of token ids "
                                                  + "or an array of such arrays", param: "prompt", code: "invalid_type")
                }
                guard id >= 0, id < vocabularySize else {
                    throw APIError.invalidValue("prompt", "holds token id \(id), outside the vocabulary (0..<\(vocabularySize))")
                }
                return Int32(id)
            }
            guard !ids.isEmpty else { throw APIError.invalidValue("prompt", "is an empty list of tokens") }
            return ids
        }
        switch value {
        case .string(let text):
            prompts = [.text(text)]
        case .array(let items) where !items.isEmpty && items.allSatisfy({ if case .string = $0 { true } else { false } }):
            prompts = items.map { if case .string(let text) = $0 { .text(text) } else { .text("") } }
        case .array(let items) where !items.isEmpty && items.allSatisfy({ if case .array = $0 { true } else { false } }):
            prompts = try items.map { if case .array(let ids) = $0 { .tokens(try tokenList(ids)) } else { .tokens([]) } }
        case .array(let items):
            prompts = [.tokens(try tokenList(items))]
        default:
            throw APIError.invalidType("prompt", expected: "a string or an array of token ids", got: value)
        }
        guard prompts.count * parameters.choices <= Self.maxChoices else {
            throw APIError.invalidValue("prompt", "holds \(prompts.count) prompts of \(parameters.choices) choices each; "
                                        + "at most \(Self.maxChoices) choices in all are allowed")
        }
    }

    /// Most choices (prompts × n) one request may ask for.
    static let maxChoices = 64
}

extension ChatRequest {
    static let roles: Set<String> = ["system", "developer", "user", "assistant"]

    init(json: JSONValue, defaults: GenerationDefaults = .none) throws {
        let fields = try FieldReader(json)
        parameters = try CommonParameters(fields, maxTokensKeys: ["max_completion_tokens", "max_tokens"], defaults: defaults)
        let top = try fields.int("top_logprobs")
        if try fields.bool("logprobs") == true {
            if let top, top < 0 || top > 20 {
                throw APIError.invalidValue("top_logprobs", "must be between 0 and 20 (got \(top))")
            }
            parameters.logprobs = top ?? 0
        } else if top != nil {
            throw APIError.invalidValue("top_logprobs", "needs logprobs: true")
        }
        if let tools = fields["tools"], tools != .null, tools != .array([]) {
            throw APIError.unsupported("tools", "is not supported")
        }
        if let format = fields["response_format"], format != .null, format["type"] != .string("text") {
            throw APIError.unsupported("response_format", "is not supported (only {\"type\": \"text\"})")
        }
        guard let value = fields["messages"], value != .null else {
            throw APIError.invalidRequest("'messages' is required", param: "messages", code: "missing_required_parameter")
        }
        guard case .array(let items) = value else {
            throw APIError.invalidType("messages", expected: "an array of messages", got: value)
        }
        guard !items.isEmpty else { throw APIError.invalidValue("messages", "must hold at least one message") }
        messages = try items.enumerated().map { index, item in try Self.message(item, at: index) }
        templateVariables = try Self.templateVariables(fields["chat_template_kwargs"])
    }

    /// `chat_template_kwargs`: an object of at most 16 scalar values (booleans, numbers, strings).
    static func templateVariables(_ value: JSONValue?) throws -> [String: JSONValue] {
        guard let value, value != .null else { return [:] }
        guard case .object(let fields) = value else {
            throw APIError.invalidType("chat_template_kwargs", expected: "an object", got: value)
        }
        guard fields.count <= 16 else { throw APIError.invalidValue("chat_template_kwargs", "holds \(fields.count) keys; at most 16 are allowed") }
        var variables: [String: JSONValue] = [:]
        for (key, item) in fields {
            guard key.utf8.count <= 64, !["messages", "add_generation_prompt"].contains(key) else {
                throw APIError.invalidValue("chat_template_kwargs", "cannot set \(APIError.clipped(key))")
            }
            switch item {
            case .bool, .int, .double, .null: variables[key] = item
            case .string(let s) where s.utf8.count <= 4096: variables[key] = item
            default:
                throw APIError.invalidValue("chat_template_kwargs", "\(APIError.clipped(key)) must be a boolean, a number or a short string")
            }
        }
        return variables
    }

    static func message(_ item: JSONValue, at index: Int) throws -> ChatMessage {
        let param = "messages[\(index)]"
        guard case .object = item else { throw APIError.invalidType(param, expected: "an object", got: item) }
        guard case .string(let role)? = item["role"] else {
            throw APIError.invalidRequest("'\(param).role' must be a string", param: "\(param).role", code: "invalid_type")
        }
        guard roles.contains(role) else {
            throw APIError.invalidValue("\(param).role", "'\(APIError.clipped(role))' is not one of system, developer, user, assistant")
        }
        let content: String
        switch item["content"] {
        case .string(let text)?:
            content = text
        case .null?, nil:
            guard role == "assistant" else {
                throw APIError.invalidRequest("'\(param).content' is required", param: "\(param).content",
                                              code: "missing_required_parameter")
            }
            content = ""
        case .array(let parts)?:
            content = try parts.enumerated().map { partIndex, part in
                guard part["type"] == .string("text"), case .string(let text)? = part["text"] else {
                    throw APIError.unsupported("\(param).content[\(partIndex)]", "must be a text part ({\"type\": \"text\", \"text\": ...})")
                }
                return text
            }.joined()
        default:
            throw APIError.invalidRequest("'\(param).content' must be a string or an array of text parts",
                                          param: "\(param).content", code: "invalid_type")
        }
        // The chat template knows system, user and assistant; a developer message is a system one.
        return ChatMessage(role: role == "developer" ? "system" : role, content: content)
    }
}

extension CommonParameters {
    /// `defaults`: the model's generation_config.json, for the sampling fields a request leaves
    /// out (as vLLM does: temperature, top_p, top_k, repetition_penalty; do_sample is not used).
    init(_ fields: FieldReader, maxTokensKeys: [String], minimumMaxTokens: Int = 1, defaults: GenerationDefaults = .none) throws {
        sampling.temperature = defaults.temperature ?? 1
        sampling.topP = defaults.topP ?? 1
        sampling.topK = defaults.topK ?? 0
        sampling.repetitionPenalty = defaults.repetitionPenalty ?? 1
        guard let name = try fields.string("model") else {
            throw APIError.invalidRequest("'model' is required", param: "model", code: "missing_required_parameter")
        }
        model = name
        stream = try fields.bool("stream") ?? false
        if let options = fields["stream_options"], options != .null {
            guard stream else { throw APIError.invalidValue("stream_options", "is only allowed with stream: true") }
            let reader = try FieldReader(options, name: "stream_options")
            includeUsageInStream = try reader.bool("include_usage") ?? false
        }
        for key in maxTokensKeys {
            guard let value = try fields.int(key) else { continue }
            guard value >= minimumMaxTokens else {
                throw APIError.invalidValue(key, "must be at least \(minimumMaxTokens) (got \(value))")
            }
            maxTokens = value
            break
        }
        if let t = try fields.number("temperature") {
            guard t >= 0, t <= 2 else { throw APIError.invalidValue("temperature", "must be between 0 and 2 (got \(t))") }
            sampling.temperature = t
        }
        if let p = try fields.number("top_p") {
            guard p > 0, p <= 1 else { throw APIError.invalidValue("top_p", "must be in (0, 1] (got \(p))") }
            sampling.topP = p
        }
        if let k = try fields.int("top_k") {
            guard k >= -1 else { throw APIError.invalidValue("top_k", "must be >= 0, or -1 for no limit (got \(k))") }
            sampling.topK = max(k, 0)
        }
        if let seed = try fields.int("seed") {
            sampling.seed = UInt64(bitPattern: Int64(seed))
        } else {
            sampling.seed = UInt64.random(in: 0...UInt64.max)
        }
        stop = try Self.stopStrings(fields["stop"])
        ignoreEOS = try fields.bool("ignore_eos") ?? false
        if let n = try fields.int("n") {
            guard n >= 1, n <= CompletionRequest.maxChoices else {
                throw APIError.invalidValue("n", "must be between 1 and \(CompletionRequest.maxChoices) (got \(n))")
            }
            choices = n
        }
        if let value = try fields.number("presence_penalty") {
            guard value >= -2, value <= 2 else { throw APIError.invalidValue("presence_penalty", "must be between -2 and 2 (got \(value))") }
            sampling.presencePenalty = value
        }
        if let value = try fields.number("frequency_penalty") {
            guard value >= -2, value <= 2 else { throw APIError.invalidValue("frequency_penalty", "must be between -2 and 2 (got \(value))") }
            sampling.frequencyPenalty = value
        }
        if let value = try fields.number("repetition_penalty") {
            guard value > 0 else { throw APIError.invalidValue("repetition_penalty", "must be greater than 0 (got \(value))") }
            sampling.repetitionPenalty = value
        }
        if let bias = fields["logit_bias"], bias != .null, bias != .object([:]) {
            throw APIError.unsupported("logit_bias", "is not supported")
        }
    }

    static func stopStrings(_ value: JSONValue?) throws -> [String] {
        switch value {
        case nil, .null?: return []
        case .string(let text)?: return [text]
        case .array(let items)?:
            guard items.count <= 4 else { throw APIError.invalidValue("stop", "holds \(items.count) strings; at most 4 are allowed") }
            return try items.map {
                guard case .string(let text) = $0 else { throw APIError.invalidType("stop", expected: "a string or an array of strings", got: $0) }
                return text
            }
        case let other?:
            throw APIError.invalidType("stop", expected: "a string or an array of strings", got: other)
        }
    }
}

/// Typed access to the fields of a JSON object, with OpenAI-style errors naming the field.
struct FieldReader {
    let fields: [String: JSONValue]

    init(_ value: JSONValue, name: String = "the request body") throws {
        guard case .object(let fields) = value else {
            throw APIError.invalidRequest("\(name) must be a JSON object, got \(value.typeName)")
        }
        self.fields = fields
    }

    subscript(key: String) -> JSONValue? { fields[key] }

    func string(_ key: String) throws -> String? {
        switch fields[key] {
        case nil, .null?: return nil
        case .string(let value)?: return value
        case let other?: throw APIError.invalidType(key, expected: "a string", got: other)
        }
    }

    func bool(_ key: String) throws -> Bool? {
        switch fields[key] {
        case nil, .null?: return nil
        case .bool(let value)?: return value
        case let other?: throw APIError.invalidType(key, expected: "a boolean", got: other)
        }
    }

    func int(_ key: String) throws -> Int? {
        switch fields[key] {
        case nil, .null?: return nil
        case .int(let value)?: return value
        case .double(let value)? where value.rounded() == value && abs(value) < 1e15: return Int(value)
        case let other?: throw APIError.invalidType(key, expected: "an integer", got: other)
        }
    }

    func number(_ key: String) throws -> Double? {
        switch fields[key] {
        case nil, .null?: return nil
        case .int(let value)?: return Double(value)
        case .double(let value)?: return value
        case let other?: throw APIError.invalidType(key, expected: "a number", got: other)
        }
    }

    /// Fails unless `key` is absent, null or `allowed`.
    func requireUnset(_ key: String, allowing allowed: JSONValue? = nil, _ message: String) throws {
        guard let value = fields[key], value != .null else { return }
        if let allowed, value == allowed { return }
        if let allowed, case .int(let a) = allowed, case .double(let d) = value, d == Double(a) { return }
        throw APIError.unsupported(key, message)
    }
}
