import Foundation
import MoERuntime

/// Builds the JSON bodies and server-sent-event chunks of OpenAI's completion APIs.
struct ResponseFormat: Sendable {
    enum Kind: Sendable {
        case completion
        case chat
    }

    let kind: Kind
    let id: String
    let created: Int
    let model: String
    /// With stream_options.include_usage every chunk carries "usage" (null until the last).
    let includeUsage: Bool
    /// Names tokens in log-probability listings; nil when the request asked for none.
    let logprobsTokenizer: (any TextTokenizer)?

    init(kind: Kind, model: String, includeUsage: Bool = false, logprobsTokenizer: (any TextTokenizer)? = nil) {
        self.kind = kind
        self.model = model
        self.includeUsage = includeUsage
        self.logprobsTokenizer = logprobsTokenizer
        let hex = (0..<12).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        id = (kind == .chat ? "chatcmpl-" : "cmpl-") + hex
        created = Int(Date().timeIntervalSince1970)
    }

    static func finishReason(_ reason: FinishReason) -> String {
        switch reason {
        case .endOfSequence, .stopString: "stop"
        case .maxTokens, .contextFull: "length"
        }
    }

    static func usage(prompt: Int, completion: Int) -> JSONValue {
        .object(["prompt_tokens": .int(prompt), "completion_tokens": .int(completion),
                 "total_tokens": .int(prompt + completion)])
    }

    private var header: [String: JSONValue] {
        ["id": .string(id), "created": .int(created), "model": .string(model)]
    }

    /// One choice of a non-streaming answer.
    struct Choice: Sendable {
        var index: Int
        var text: String
        var logprobs: [LogprobEntry] = []
        var finish: FinishReason?
        var completionTokens = 0
    }

    /// The whole answer of a non-streaming request; usage counts the prompt once and the tokens of
    /// every choice.
    func complete(_ choices: [Choice], promptTokens: Int) -> JSONValue {
        var body = header
        body["object"] = .string(kind == .chat ? "chat.completion" : "text_completion")
        body["choices"] = .array(choices.map { choice in
            var item: [String: JSONValue] = ["index": .int(choice.index), "logprobs": listing(choice.logprobs),
                                             "finish_reason": choice.finish.map { .string(Self.finishReason($0)) } ?? .null]
            switch kind {
            case .completion: item["text"] = .string(choice.text)
            case .chat: item["message"] = .object(["role": .string("assistant"), "content": .string(choice.text)])
            }
            return .object(item)
        })
        body["usage"] = Self.usage(prompt: promptTokens, completion: choices.reduce(0) { $0 + $1.completionTokens })
        return .object(body)
    }

    /// A streamed piece of text (for chat, the first chunk also names the role) with the
    /// log-probabilities of the tokens it completes.
    func chunk(index: Int = 0, text: String, first: Bool = false, finish: FinishReason? = nil,
               logprobs: [LogprobEntry] = []) -> JSONValue {
        var body = header
        let reason = finish.map { JSONValue.string(Self.finishReason($0)) } ?? .null
        switch kind {
        case .completion:
            body["object"] = .string("text_completion")
            body["choices"] = .array([.object(["index": .int(index), "text": .string(text), "logprobs": listing(logprobs),
                                               "finish_reason": reason])])
        case .chat:
            body["object"] = .string("chat.completion.chunk")
            var delta: [String: JSONValue] = [:]
            if first { delta["role"] = .string("assistant") }
            if first || !text.isEmpty || finish == nil { delta["content"] = .string(text) }
            body["choices"] = .array([.object(["index": .int(index), "delta": .object(delta), "logprobs": listing(logprobs),
                                               "finish_reason": reason])])
        }
        if includeUsage { body["usage"] = .null }
        return .object(body)
    }

    /// The last chunk before [DONE] when usage was asked for: no choices, only counts.
    func usageChunk(promptTokens: Int, completionTokens: Int) -> JSONValue {
        var body = header
        body["object"] = .string(kind == .chat ? "chat.completion.chunk" : "text_completion")
        body["choices"] = .array([])
        body["usage"] = Self.usage(prompt: promptTokens, completion: completionTokens)
        return .object(body)
    }

    /// OpenAI's logprobs object of a choice: for completions parallel lists (`tokens`,
    /// `token_logprobs`, `top_logprobs` as token-to-logprob maps that always hold the chosen token,
    /// `text_offset`), for chat one `content` entry per token with its UTF-8 `bytes` and its
    /// `top_logprobs` list. null when the request asked for none (or, streaming, for a chunk that
    /// completes no token).
    func listing(_ entries: [LogprobEntry]) -> JSONValue {
        guard let tokenizer = logprobsTokenizer, !entries.isEmpty else { return .null }
        func bytes(_ id: Int32) -> [UInt8] { tokenizer.tokenBytes(id) }
        func text(_ id: Int32) -> String { String(decoding: bytes(id), as: UTF8.self) }
        // JSON has no -infinity; vLLM writes -9999 for a token the model rules out.
        func number(_ value: Float) -> JSONValue { .double(value.isFinite ? Double(value) : -9999) }
        switch kind {
        case .completion:
            let tops = entries.map { entry -> JSONValue in
                guard let logprobs = entry.logprobs else { return .null }
                var top: [String: JSONValue] = [:]
                for alternative in logprobs.top where top[text(alternative.token)] == nil {
                    top[text(alternative.token)] = number(alternative.logprob)
                }
                top[text(entry.token)] = number(logprobs.logprob)
                return .object(top)
            }
            return .object([
                "tokens": .array(entries.map { .string(text($0.token)) }),
                "token_logprobs": .array(entries.map { $0.logprobs.map { number($0.logprob) } ?? .null }),
                "top_logprobs": .array(tops),
                "text_offset": .array(entries.map { .int($0.textOffset) }),
            ])
        case .chat:
            func token(_ id: Int32, _ logprob: Float) -> [String: JSONValue] {
                ["token": .string(text(id)), "logprob": number(logprob), "bytes": .array(bytes(id).map { .int(Int($0)) })]
            }
            return .object(["content": .array(entries.compactMap { entry in
                guard let logprobs = entry.logprobs else { return nil }
                var item = token(entry.token, logprobs.logprob)
                item["top_logprobs"] = .array(logprobs.top.map { .object(token($0.token, $0.logprob)) })
                return .object(item)
            })])
        }
    }

    /// An echoed prompt's listing: its first token without a log-probability, then `scored` (the
    /// rest), offsets counting the listed token texts; and the length of those texts, where the
    /// generated tokens' offsets continue.
    func promptEntries(_ prompt: [Int32], scored: [TokenLogprobs]) -> (entries: [LogprobEntry], length: Int) {
        var entries: [LogprobEntry] = []
        var offset = 0
        for (i, token) in prompt.enumerated() {
            entries.append(LogprobEntry(token: token, logprobs: i > 0 && i - 1 < scored.count ? scored[i - 1] : nil,
                                        textOffset: offset))
            offset += String(decoding: logprobsTokenizer?.tokenBytes(token) ?? [], as: UTF8.self).unicodeScalars.count
        }
        return (entries, offset)
    }

    static func event(_ value: JSONValue) -> String { "data: \(value.encodedString)\n\n" }
    static let done = "data: [DONE]\n\n"
}

/// One token's log-probabilities (none for an echoed prompt's first token) and where its text
/// starts in the listing (in Unicode scalars, as Python counts string positions).
struct LogprobEntry: Sendable {
    var token: Int32
    var logprobs: TokenLogprobs?
    var textOffset: Int
}
