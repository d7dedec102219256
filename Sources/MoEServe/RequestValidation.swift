import Foundation
import MoETokenizer

/// The request checks of the server without a server or a model: a body is parsed and validated
/// as its endpoint would, and a malformed one throws the `APIError` the client would be sent.
/// The fuzz targets and tests drive the validators through this.
public enum RequestValidation {
    /// What a valid request asks for, in brief.
    public struct Summary: Sendable, Equatable {
        /// Prompts of a completion request (a text prompt counts as one).
        public var prompts: Int
        /// Text prompts, and token ids given directly as prompts.
        public var promptTexts: [String]
        public var promptTokens: [[Int32]]
        /// The conversation of a chat request, as the chat template receives it.
        public var messages: [ChatMessage]
        public var maxTokens: Int?
        public var choices: Int
        public var stop: [String]
    }

    /// POST /v1/completions; `vocabularySize` bounds token-id prompts.
    public static func completion(body: Data, vocabularySize: Int) throws -> Summary {
        let request = try CompletionRequest(json: try JSONValue.parse(body), vocabularySize: vocabularySize)
        var texts: [String] = [], tokens: [[Int32]] = []
        for prompt in request.prompts {
            switch prompt {
            case .text(let text): texts.append(text)
            case .tokens(let ids): tokens.append(ids)
            }
        }
        return Summary(prompts: request.prompts.count, promptTexts: texts, promptTokens: tokens, messages: [],
                       maxTokens: request.parameters.maxTokens, choices: request.parameters.choices,
                       stop: request.parameters.stop)
    }

    /// POST /v1/chat/completions.
    public static func chat(body: Data) throws -> Summary {
        let request = try ChatRequest(json: try JSONValue.parse(body))
        return Summary(prompts: 1, promptTexts: [], promptTokens: [], messages: request.messages,
                       maxTokens: request.parameters.maxTokens, choices: request.parameters.choices,
                       stop: request.parameters.stop)
    }
}
