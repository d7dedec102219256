import Foundation
import Hummingbird
import MoERuntime
import NIOCore

/// POST /v1/completions and /v1/chat/completions: validate, tokenize, queue, answer.
extension OpenAIServer {
    func completions(_ request: Request) async throws -> Response {
        let json = try await readJSON(request)
        let parsed = try CompletionRequest(json: json, vocabularySize: served.language.model.config.vocabSize,
                                           defaults: served.language.generationDefaults)
        try checkModel(parsed.parameters.model)
        let format = ResponseFormat(kind: .completion, model: served.name,
                                    includeUsage: parsed.parameters.includeUsageInStream,
                                    logprobsTokenizer: parsed.parameters.logprobs == nil ? nil : served.language.tokenizer)
        let prompts = try parsed.prompts.map { input -> Prompt in
            switch input {
            case .text(let text):
                // BOS and EOS as the tokenizer's configuration says, as transformers and vLLM do.
                let ids = try encodePrompt(text, param: "prompt")
                return Prompt(tokens: ids, echo: parsed.parameters.echo ? text : nil)
            case .tokens(let ids):
                let echo = parsed.parameters.echo ? served.language.tokenizer.decode(ids, skipSpecialTokens: true) : nil
                return Prompt(tokens: ids, echo: echo)
            }
        }
        return try await generate(prompts: prompts, parameters: parsed.parameters, promptParam: "prompt", format: format)
    }

    func chatCompletions(_ request: Request) async throws -> Response {
        let json = try await readJSON(request)
        let parsed = try ChatRequest(json: json, defaults: served.language.generationDefaults)
        try checkModel(parsed.parameters.model)
        let text: String
        do {
            text = try served.language.chatPrompt(parsed.messages, variables: parsed.jinjaVariables)
        } catch {
            throw APIError.invalidRequest("the messages cannot be rendered with the chat template: \(error)", param: "messages")
        }
        // The rendered conversation starts with its own beginning-of-sequence marker.
        let prompt = try encode(text, addBOS: false, param: "messages")
        let format = ResponseFormat(kind: .chat, model: served.name, includeUsage: parsed.parameters.includeUsageInStream,
                                    logprobsTokenizer: parsed.parameters.logprobs == nil ? nil : served.language.tokenizer)
        return try await generate(prompts: [Prompt(tokens: prompt, echo: nil)], parameters: parsed.parameters,
                                  promptParam: "messages", format: format)
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
        } catch {
            // A body cut short of its Content-Length, a bad chunk size, a connection closed
            // mid-body: the client's fault, whatever layer noticed it.
            throw APIError.invalidRequest("the request body could not be read: it is incomplete or its framing is malformed",
                                          code: "malformed_body")
        }
        return try JSONValue.parse(Data(buffer.readableBytesView))
    }

    func checkModel(_ name: String) throws {
        guard name == served.name else { throw APIError.modelNotFound(name) }
    }

    func encodePrompt(_ text: String, param: String) throws -> [Int32] {
        do {
            return try served.language.tokenizer.encodePrompt(text)
        } catch {
            throw APIError.invalidRequest("the \(param) cannot be tokenized: \(error)", param: param)
        }
    }

    func encode(_ text: String, addBOS: Bool, param: String) throws -> [Int32] {
        do {
            return try served.language.tokenizer.encode(text, addBOS: addBOS, parseSpecialTokens: true)
        } catch {
            throw APIError.invalidRequest("the \(param) cannot be tokenized: \(error)", param: param)
        }
    }

    /// A prompt's tokens and, with `echo`, the text its choices start with.
    struct Prompt: Sendable {
        var tokens: [Int32]
        var echo: String?
    }

    /// Checks the context, queues every choice of every prompt (all or none) and answers as one
    /// JSON body or as server-sent events. Choice j of prompt i has index i * n + j.
    func generate(prompts: [Prompt], parameters: CommonParameters, promptParam: String,
                  format: ResponseFormat) async throws -> Response {
        let limit = contextLimit
        var submissions: [BatchScheduler.Submission] = []
        var choicePrompts: [Prompt] = []
        for prompt in prompts {
            let count = prompt.tokens.count
            guard count > 0 else { throw APIError.invalidValue(promptParam, "is empty") }
            // Compared as a difference: max_tokens can be as large as Int.max.
            if let maxTokens = parameters.maxTokens, maxTokens > limit - count {
                throw APIError.contextOverflow(limit: limit, prompt: count, completion: maxTokens, param: promptParam)
            }
            guard count < limit else {
                throw APIError.contextOverflow(limit: limit, prompt: count, completion: 1, param: promptParam)
            }
            let maxTokens = parameters.maxTokens ?? min(options.defaultMaxTokens, limit - count)
            // Each choice is a sequence of its own (the choices of a prompt share its prefill);
            // choice j samples with seed + j, so n choices are n different draws that each replay alone.
            for index in 0..<parameters.choices {
                var sampling = parameters.sampling
                sampling.seed = sampling.seed &+ UInt64(index)
                let options = GenerationOptions(maxTokens: maxTokens, sampling: sampling, stopStrings: parameters.stop, addBOS: false)
                submissions.append(.init(prompt: prompt.tokens, options: options, cacheCapacity: count + maxTokens))
                choicePrompts.append(prompt)
            }
        }
        let jobs = try scheduler.submit(submissions, ignoreEOS: parameters.ignoreEOS, logprobs: parameters.logprobs,
                                        promptLogprobs: parameters.echo)
        // usage counts every prompt once
        let promptTokens = prompts.reduce(0) { $0 + $1.tokens.count }
        return parameters.stream ? streamResponse(jobs, prompts: choicePrompts, promptTokens: promptTokens, format: format)
            : try await wholeResponse(jobs, prompts: choicePrompts, promptTokens: promptTokens, format: format)
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

    private func wholeResponse(_ jobs: [GenerationHandle], prompts: [Prompt], promptTokens: Int,
                               format: ResponseFormat) async throws -> Response {
        defer { for job in jobs { job.cancel() } }
        // One after the other: the scheduler runs them together and each stream keeps its events.
        var choices: [ResponseFormat.Choice] = []
        for (job, prompt) in zip(jobs, prompts) {
            var choice = ResponseFormat.Choice(index: choices.count, text: prompt.echo ?? "")
            var textLength = 0
            events: for await event in job.events {
                switch event {
                case .prompt(let scored):
                    (choice.logprobs, textLength) = format.promptEntries(prompt.tokens, scored: scored)
                case .token(let id, let piece, let tokenLogprobs):
                    if let tokenLogprobs { choice.logprobs.append(LogprobEntry(token: id, logprobs: tokenLogprobs, textOffset: textLength)) }
                    choice.text += piece
                    textLength += piece.unicodeScalars.count
                case .finished(let reason, _, let completion):
                    choice.finish = reason
                    choice.completionTokens = completion
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

    private func streamResponse(_ jobs: [GenerationHandle], prompts: [Prompt], promptTokens: Int,
                                format: ResponseFormat) -> Response {
        let body = ResponseBody { writer in
            // However this ends (finished, write failed because the client left, task cancelled),
            // the sequences leave the batch and their caches are freed.
            defer { for job in jobs { job.cancel() } }
            func send(_ value: JSONValue) async throws { try await writer.write(ByteBuffer(string: ResponseFormat.event(value))) }
            for index in jobs.indices {
                if format.kind == .chat { try await send(format.chunk(index: index, text: "", first: true)) }
                // An echoed prompt comes first; with log-probabilities once the prompt is scored.
                if let echo = prompts[index].echo, format.logprobsTokenizer == nil { try await send(format.chunk(index: index, text: echo)) }
            }
            // Per choice: log-probabilities of tokens whose text is held back (an unfinished
            // character, a possible stop string) go with the next chunk that has text.
            var pending = [[LogprobEntry]](repeating: [], count: jobs.count)
            var textLength = [Int](repeating: 0, count: jobs.count)
            var running = jobs.count
            var completionTokens = 0
            /// Sends what one event brings; true once the answer is complete (or failed).
            func handle(_ index: Int, _ event: JobEvent) async throws -> Bool {
                switch event {
                case .prompt(let scored):
                    let (entries, length) = format.promptEntries(prompts[index].tokens, scored: scored)
                    textLength[index] = length
                    try await send(format.chunk(index: index, text: prompts[index].echo ?? "", logprobs: entries))
                case .token(let id, let piece, let tokenLogprobs):
                    if let tokenLogprobs {
                        pending[index].append(LogprobEntry(token: id, logprobs: tokenLogprobs, textOffset: textLength[index]))
                    }
                    guard !piece.isEmpty else { return false }
                    textLength[index] += piece.unicodeScalars.count
                    try await send(format.chunk(index: index, text: piece, logprobs: pending[index]))
                    pending[index] = []
                case .finished(let reason, _, let completion):
                    try await send(format.chunk(index: index, text: "", finish: reason, logprobs: pending[index]))
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
