import Foundation
import Hummingbird
import MoERuntime

/// POST /tokenize and /detokenize (as vLLM has them): token ids of a prompt or a conversation,
/// and the text of token ids, so a client can count tokens against the context before it asks.
extension OpenAIServer {
    func tokenize(_ request: Request) async throws -> Response {
        let fields = try FieldReader(try await readJSON(request))
        if let name = try fields.string("model") { try checkModel(name) }
        let addSpecial = try fields.bool("add_special_tokens") ?? true
        let tokens: [Int32]
        switch (fields["prompt"], fields["messages"]) {
        case (let prompt?, nil) where prompt != .null:
            guard case .string(let text) = prompt else { throw APIError.invalidType("prompt", expected: "a string", got: prompt) }
            tokens = try addSpecial ? encodePrompt(text, param: "prompt") : encode(text, addBOS: false, param: "prompt")
        case (nil, let messages?) where messages != .null:
            guard case .array(let items) = messages, !items.isEmpty else {
                throw APIError.invalidType("messages", expected: "a non-empty array of messages", got: messages)
            }
            let conversation = try items.enumerated().map { try ChatRequest.message($1, at: $0) }
            let text: String
            do {
                text = try served.language.chatPrompt(conversation)
            } catch {
                throw APIError.invalidRequest("the messages cannot be rendered with the chat template: \(error)", param: "messages")
            }
            // The rendered conversation starts with its own beginning-of-sequence marker.
            tokens = try encode(text, addBOS: false, param: "messages")
        default:
            throw APIError.invalidRequest("give exactly one of 'prompt' (a string) and 'messages'", param: "prompt",
                                          code: "missing_required_parameter")
        }
        return jsonResponse(.object(["tokens": .array(tokens.map { .int(Int($0)) }), "count": .int(tokens.count),
                                     "max_model_len": .int(contextLimit)]))
    }

    func detokenize(_ request: Request) async throws -> Response {
        let fields = try FieldReader(try await readJSON(request))
        if let name = try fields.string("model") { try checkModel(name) }
        guard let value = fields["tokens"], value != .null else {
            throw APIError.invalidRequest("'tokens' is required", param: "tokens", code: "missing_required_parameter")
        }
        guard case .array(let items) = value else { throw APIError.invalidType("tokens", expected: "an array of token ids", got: value) }
        let vocabulary = served.language.model.config.vocabSize
        let ids = try items.map { item -> Int32 in
            guard case .int(let id) = item else { throw APIError.invalidType("tokens", expected: "an array of token ids", got: item) }
            guard id >= 0, id < vocabulary else {
                throw APIError.invalidValue("tokens", "holds token id \(id), outside the vocabulary (0..<\(vocabulary))")
            }
            return Int32(id)
        }
        return jsonResponse(.object(["prompt": .string(served.language.tokenizer.decode(ids, skipSpecialTokens: false))]))
    }
}
