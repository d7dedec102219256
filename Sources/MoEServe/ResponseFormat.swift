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

    init(kind: Kind, model: String, includeUsage: Bool = false) {
        self.kind = kind
        self.model = model
        self.includeUsage = includeUsage
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

    /// The whole answer of a non-streaming request.
    func complete(text: String, finish: FinishReason, promptTokens: Int, completionTokens: Int) -> JSONValue {
        var body = header
        let reason = JSONValue.string(Self.finishReason(finish))
        switch kind {
        case .completion:
            body["object"] = .string("text_completion")
            body["choices"] = .array([.object(["index": .int(0), "text": .string(text), "logprobs": .null,
                                               "finish_reason": reason])])
        case .chat:
            body["object"] = .string("chat.completion")
            body["choices"] = .array([.object([
                "index": .int(0),
                "message": .object(["role": .string("assistant"), "content": .string(text)]),
                "logprobs": .null,
                "finish_reason": reason,
            ])])
        }
        body["usage"] = Self.usage(prompt: promptTokens, completion: completionTokens)
        return .object(body)
    }

    /// A streamed piece of text (for chat, the first chunk also names the role).
    func chunk(text: String, first: Bool = false, finish: FinishReason? = nil) -> JSONValue {
        var body = header
        let reason = finish.map { JSONValue.string(Self.finishReason($0)) } ?? .null
        switch kind {
        case .completion:
            body["object"] = .string("text_completion")
            body["choices"] = .array([.object(["index": .int(0), "text": .string(text), "logprobs": .null,
                                               "finish_reason": reason])])
        case .chat:
            body["object"] = .string("chat.completion.chunk")
            var delta: [String: JSONValue] = [:]
            if first { delta["role"] = .string("assistant") }
            if first || !text.isEmpty || finish == nil { delta["content"] = .string(text) }
            body["choices"] = .array([.object(["index": .int(0), "delta": .object(delta), "logprobs": .null,
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

    static func event(_ value: JSONValue) -> String { "data: \(value.encodedString)\n\n" }
    static let done = "data: [DONE]\n\n"
}
