import Foundation
import Hummingbird
import MoERuntime
import NIOCore

/// POST /v1/completions and /v1/chat/completions: validate, tokenize, queue, answer.
extension OpenAIServer {
    func completions(_ request: Request) async throws -> Response {
        let json = try await readJSON(request)
        let parsed = try CompletionRequest(json: json, vocabularySize: served.language.model.config.vocabSize)
        try checkModel(parsed.parameters.model)
        let prompt: [Int32]
        switch parsed.prompt {
        case .text(let text): prompt = try encode(text, addBOS: true, param: "prompt")
        case .tokens(let ids): prompt = ids
        }
        let format = ResponseFormat(kind: .completion, model: served.name,
                                    includeUsage: parsed.parameters.includeUsageInStream,
                                    logprobsTokenizer: parsed.parameters.logprobs == nil ? nil : served.language.tokenizer)
        var echo: Echo?
        if parsed.parameters.echo {
            switch parsed.prompt {
            case .text(let text): echo = Echo(text: text, prompt: prompt)
            case .tokens(let ids): echo = Echo(text: served.language.tokenizer.decode(ids, skipSpecialTokens: true), prompt: ids)
            }
        }
        return try await generate(prompt: prompt, parameters: parsed.parameters, promptParam: "prompt", format: format,
                                  echo: echo)
    }

    func chatCompletions(_ request: Request) async throws -> Response {
        let json = try await readJSON(request)
        let parsed = try ChatRequest(json: json)
        try checkModel(parsed.parameters.model)
        let text: String
        do {
            text = try served.language.chatPrompt(parsed.messages)
        } catch {
            throw APIError.invalidRequest("the messages cannot be rendered with the chat template: \(error)", param: "messages")
        }
        // The rendered conversation starts with its own beginning-of-sequence marker.
        let prompt = try encode(text, addBOS: false, param: "messages")
        let format = ResponseFormat(kind: .chat, model: served.name, includeUsage: parsed.parameters.includeUsageInStream,
                                    logprobsTokenizer: parsed.parameters.logprobs == nil ? nil : served.language.tokenizer)
        return try await generate(prompt: prompt, parameters: parsed.parameters, promptParam: "messages", format: format)
    }

    /// The body as JSON, within the size limit.
    func readJSON(_ request: Request) async throws -> JSONValue {
        let limit = options.maxBodyBytes
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw APIError.bodyTooLarge(limit: limit)
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw APIError.bodyTooLarge(limit: limit)
        }
        return try JSONValue.parse(Data(buffer.readableBytesView))
    }

    func checkModel(_ name: String) throws {
        guard name == served.name else { throw APIError.modelNotFound(name) }
    }

    func encode(_ text: String, addBOS: Bool, param: String) throws -> [Int32] {
        do {
            return try served.language.tokenizer.encode(text, addBOS: addBOS, parseSpecialTokens: true)
        } catch {
            throw APIError.invalidRequest("the \(param) cannot be tokenized: \(error)", param: param)
        }
    }

    /// A completion's prompt as its answer repeats it (`echo`).
    struct Echo: Sendable {
        var text: String
        var prompt: [Int32]
    }

    /// Checks the context, queues the sequence and answers as one JSON body or as server-sent events.
    func generate(prompt: [Int32], parameters: CommonParameters, promptParam: String,
                  format: ResponseFormat, echo: Echo? = nil) async throws -> Response {
        guard !prompt.isEmpty else { throw APIError.invalidValue(promptParam, "is empty") }
        let limit = contextLimit
        if let maxTokens = parameters.maxTokens, prompt.count + maxTokens > limit {
            throw APIError.contextOverflow(limit: limit, prompt: prompt.count, completion: maxTokens, param: promptParam)
        }
        guard prompt.count < limit else {
            throw APIError.contextOverflow(limit: limit, prompt: prompt.count, completion: 1, param: promptParam)
        }
        let maxTokens = parameters.maxTokens ?? min(options.defaultMaxTokens, limit - prompt.count)
        let generation = GenerationOptions(maxTokens: maxTokens, sampling: parameters.sampling,
                                           stopStrings: parameters.stop, addBOS: false)
        let job = try scheduler.submit(prompt: prompt, options: generation, cacheCapacity: prompt.count + maxTokens,
                                       ignoreEOS: parameters.ignoreEOS, logprobs: parameters.logprobs,
                                       promptLogprobs: echo != nil)
        return parameters.stream ? streamResponse(job, format: format, echo: echo)
            : try await wholeResponse(job, format: format, echo: echo)
    }

    private func wholeResponse(_ job: GenerationHandle, format: ResponseFormat, echo: Echo?) async throws -> Response {
        defer { job.cancel() }
        var text = echo?.text ?? "", textLength = 0
        var logprobs: [LogprobEntry] = []
        for await event in job.events {
            switch event {
            case .prompt(let scored):
                (logprobs, textLength) = format.promptEntries(echo?.prompt ?? [], scored: scored)
            case .token(let id, let piece, let tokenLogprobs):
                if let tokenLogprobs { logprobs.append(LogprobEntry(token: id, logprobs: tokenLogprobs, textOffset: textLength)) }
                text += piece
                textLength += piece.unicodeScalars.count
            case .finished(let reason, let promptTokens, let completionTokens):
                return jsonResponse(format.complete(text: text, finish: reason, promptTokens: promptTokens,
                                                    completionTokens: completionTokens, logprobs: logprobs))
            case .failed(let message):
                throw Self.failure(message)
            }
        }
        throw APIError.internalError("generation ended without a result")
    }

    private func streamResponse(_ job: GenerationHandle, format: ResponseFormat, echo: Echo?) -> Response {
        let body = ResponseBody { writer in
            // However this ends (finished, write failed because the client left, task cancelled),
            // the sequence leaves the batch and its cache is freed.
            defer { job.cancel() }
            if format.kind == .chat {
                try await writer.write(ByteBuffer(string: ResponseFormat.event(format.chunk(text: "", first: true))))
            }
            // Tokens whose text is held back (an unfinished character, a possible stop string)
            // have their log-probabilities sent with the next chunk that has text.
            var pending: [LogprobEntry] = []
            var textLength = 0
            // An echoed prompt comes first; with log-probabilities once the prompt is scored.
            if let echo, format.logprobsTokenizer == nil {
                try await writer.write(ByteBuffer(string: ResponseFormat.event(format.chunk(text: echo.text))))
            }
            loop: for await event in job.events {
                switch event {
                case .prompt(let scored):
                    let (entries, length) = format.promptEntries(echo?.prompt ?? [], scored: scored)
                    textLength = length
                    try await writer.write(ByteBuffer(string: ResponseFormat.event(format.chunk(text: echo?.text ?? "", logprobs: entries))))
                case .token(let id, let piece, let tokenLogprobs):
                    if let tokenLogprobs { pending.append(LogprobEntry(token: id, logprobs: tokenLogprobs, textOffset: textLength)) }
                    guard !piece.isEmpty else { continue }
                    textLength += piece.unicodeScalars.count
                    try await writer.write(ByteBuffer(string: ResponseFormat.event(format.chunk(text: piece, logprobs: pending))))
                    pending = []
                case .finished(let reason, let promptTokens, let completionTokens):
                    var out = ResponseFormat.event(format.chunk(text: "", finish: reason, logprobs: pending))
                    if format.includeUsage {
                        out += ResponseFormat.event(format.usageChunk(promptTokens: promptTokens,
                                                                      completionTokens: completionTokens))
                    }
                    try await writer.write(ByteBuffer(string: out))
                    break loop
                case .failed(let message):
                    try await writer.write(ByteBuffer(string: ResponseFormat.event(Self.failure(message).json)))
                    break loop
                }
            }
            try await writer.write(ByteBuffer(string: ResponseFormat.done))
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    private static func failure(_ message: String) -> APIError {
        message == APIError.shuttingDownMessage ? APIError.shuttingDown : APIError.internalError(message)
    }
}
