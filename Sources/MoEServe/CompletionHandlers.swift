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
        // Each choice is a sequence of its own (its prompt prefilled once per choice); choice i
        // samples with seed + i, so n choices are n different draws that each replay alone.
        let choices = (0..<parameters.choices).map { index in
            var sampling = parameters.sampling
            sampling.seed = sampling.seed &+ UInt64(index)
            return GenerationOptions(maxTokens: maxTokens, sampling: sampling, stopStrings: parameters.stop, addBOS: false)
        }
        let jobs = try scheduler.submit(prompt: prompt, choices: choices, cacheCapacity: prompt.count + maxTokens,
                                        ignoreEOS: parameters.ignoreEOS, logprobs: parameters.logprobs,
                                        promptLogprobs: echo != nil)
        return parameters.stream ? streamResponse(jobs, format: format, echo: echo)
            : try await wholeResponse(jobs, format: format, echo: echo)
    }

    /// The events of several choices as they come, each with its choice's index.
    private static func merged(_ jobs: [GenerationHandle]) -> AsyncStream<(index: Int, event: JobEvent)> {
        let (stream, continuation) = AsyncStream<(index: Int, event: JobEvent)>.makeStream()
        let task = Task {
            await withTaskGroup(of: Void.self) { group in
                for (index, job) in jobs.enumerated() {
                    group.addTask { for await event in job.events { continuation.yield((index, event)) } }
                }
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    private func wholeResponse(_ jobs: [GenerationHandle], format: ResponseFormat, echo: Echo?) async throws -> Response {
        defer { for job in jobs { job.cancel() } }
        // One after the other: the scheduler runs them together and each stream keeps its events.
        var choices: [ResponseFormat.Choice] = []
        var promptTokens = 0
        for job in jobs {
            var choice = ResponseFormat.Choice(index: choices.count, text: echo?.text ?? "")
            var textLength = 0
            events: for await event in job.events {
                switch event {
                case .prompt(let scored):
                    (choice.logprobs, textLength) = format.promptEntries(echo?.prompt ?? [], scored: scored)
                case .token(let id, let piece, let tokenLogprobs):
                    if let tokenLogprobs { choice.logprobs.append(LogprobEntry(token: id, logprobs: tokenLogprobs, textOffset: textLength)) }
                    choice.text += piece
                    textLength += piece.unicodeScalars.count
                case .finished(let reason, let prompt, let completion):
                    choice.finish = reason
                    choice.completionTokens = completion
                    promptTokens = prompt
                    break events
                case .failed(let message):
                    throw Self.failure(message)
                }
            }
            guard choice.finish != nil else { throw APIError.internalError("generation ended without a result") }
            choices.append(choice)
        }
        return jsonResponse(format.complete(choices, promptTokens: promptTokens))
    }

    private func streamResponse(_ jobs: [GenerationHandle], format: ResponseFormat, echo: Echo?) -> Response {
        let body = ResponseBody { writer in
            // However this ends (finished, write failed because the client left, task cancelled),
            // the sequences leave the batch and their caches are freed.
            defer { for job in jobs { job.cancel() } }
            func send(_ value: JSONValue) async throws { try await writer.write(ByteBuffer(string: ResponseFormat.event(value))) }
            for index in jobs.indices {
                if format.kind == .chat { try await send(format.chunk(index: index, text: "", first: true)) }
                // An echoed prompt comes first; with log-probabilities once the prompt is scored.
                if let echo, format.logprobsTokenizer == nil { try await send(format.chunk(index: index, text: echo.text)) }
            }
            // Per choice: log-probabilities of tokens whose text is held back (an unfinished
            // character, a possible stop string) go with the next chunk that has text.
            var pending = [[LogprobEntry]](repeating: [], count: jobs.count)
            var textLength = [Int](repeating: 0, count: jobs.count)
            var running = jobs.count
            var promptTokens = 0, completionTokens = 0
            /// Sends what one event brings; true once the answer is complete (or failed).
            func handle(_ index: Int, _ event: JobEvent) async throws -> Bool {
                switch event {
                case .prompt(let scored):
                    let (entries, length) = format.promptEntries(echo?.prompt ?? [], scored: scored)
                    textLength[index] = length
                    try await send(format.chunk(index: index, text: echo?.text ?? "", logprobs: entries))
                case .token(let id, let piece, let tokenLogprobs):
                    if let tokenLogprobs {
                        pending[index].append(LogprobEntry(token: id, logprobs: tokenLogprobs, textOffset: textLength[index]))
                    }
                    guard !piece.isEmpty else { return false }
                    textLength[index] += piece.unicodeScalars.count
                    try await send(format.chunk(index: index, text: piece, logprobs: pending[index]))
                    pending[index] = []
                case .finished(let reason, let prompt, let completion):
                    try await send(format.chunk(index: index, text: "", finish: reason, logprobs: pending[index]))
                    promptTokens = prompt
                    completionTokens += completion
                    running -= 1
                    return running == 0
                case .failed(let message):
                    try await send(Self.failure(message).json)
                    return true
                }
                return false
            }
            // One choice is read directly; several through one merged stream.
            if jobs.count == 1 {
                for await event in jobs[0].events {
                    if try await handle(0, event) { break }
                }
            } else {
                for await (index, event) in Self.merged(jobs) {
                    if try await handle(index, event) { break }
                }
            }
            if running == 0 && format.includeUsage {
                try await send(format.usageChunk(promptTokens: promptTokens, completionTokens: completionTokens))
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
