import Foundation

/// One conversation's state: a KV cache and the tokens in it. Each request passes the whole
/// prompt; the part that matches what the cache already holds (an earlier turn) is not recomputed.
/// A session runs one request at a time; use one session per concurrent conversation.
public final class Session: @unchecked Sendable {
    public let languageModel: LanguageModel
    let cache: KVCache
    private var cachedTokens: [Int32] = []
    private let lock = NSLock()
    private var busy = false

    public init(model: LanguageModel, contextLength: Int? = nil) {
        languageModel = model
        cache = model.model.makeCache(capacity: contextLength)
    }

    /// The most tokens (prompt + generated) this session holds.
    public var contextLength: Int { cache.capacity }

    /// Forgets the cached conversation.
    public func reset() {
        lock.withLock {
            cache.reset()
            cachedTokens = []
        }
    }

    /// Encodes a text prompt (special-token text such as chat markers becomes its ids).
    public func encode(prompt: String, addBOS: Bool) throws -> [Int32] {
        try languageModel.tokenizer.encode(prompt, addBOS: addBOS, parseSpecialTokens: true)
    }

    /// Generates synchronously, calling `onEvent` for every token and once at the end; returns
    /// the summary. Throws `CancellationError` when `isCancelled` turns true between tokens.
    @discardableResult
    public func generate(tokens prompt: [Int32], options: GenerationOptions,
                         isCancelled: () -> Bool = { false },
                         onEvent: (GenerationEvent) throws -> Void) throws -> GenerationSummary {
        try options.validate()
        guard !prompt.isEmpty else { throw RuntimeError("the prompt is empty: nothing to generate from") }
        guard prompt.count < cache.capacity else {
            throw RuntimeError("the prompt has \(prompt.count) tokens but the context holds \(cache.capacity) "
                + "(the prompt plus at least one generated token must fit)")
        }
        try begin()
        defer { end() }
        do {
            return try decode(prompt, options: options, isCancelled: isCancelled, onEvent: onEvent)
        } catch {
            // A request cut short leaves a cache that no longer matches `cachedTokens` exactly.
            cache.reset()
            cachedTokens = []
            throw error
        }
    }

    private func decode(_ prompt: [Int32], options: GenerationOptions, isCancelled: () -> Bool,
                     onEvent: (GenerationEvent) throws -> Void) throws -> GenerationSummary {
        let clock = ContinuousClock()
        let start = clock.now
        // Reuse the cached prefix; at least the last prompt token is recomputed for its logits.
        var reused = zip(cachedTokens, prompt).prefix { $0 == $1 }.count
        reused = min(reused, prompt.count - 1)
        cache.truncate(to: reused)
        cachedTokens.removeLast(cachedTokens.count - reused)
        if isCancelled() { throw CancellationError() }
        var logits = try languageModel.model.prefill(Array(prompt[reused...]), cache: cache)
        cachedTokens = prompt
        let prefilled = clock.now

        var summary = GenerationSummary(finishReason: .maxTokens, promptTokens: prompt.count,
                                        reusedPromptTokens: reused, generatedTokens: 0,
                                        prefillSeconds: seconds(prefilled - start), decodeSeconds: 0)
        var sampler = Sampler(options: options.sampling, prompt: prompt)
        var text = TextStream(tokenizer: languageModel.tokenizer, context: prompt)
        var stops = StopMatcher(stopStrings: options.stopStrings)
        func tail() -> String { stops.append(text.flush()) + stops.flush() }

        while summary.generatedTokens < options.maxTokens {
            let token = sampler.sample(logits)
            summary.generatedTokens += 1
            if languageModel.stopTokenIDs.contains(token) {
                summary.finishReason = .endOfSequence
                try onEvent(.token(id: token, text: tail()))
                break
            }
            var visible = stops.append(text.append(token))
            if stops.stopped {
                summary.finishReason = .stopString
                try onEvent(.token(id: token, text: visible))
                break
            }
            let lengthReached = summary.generatedTokens == options.maxTokens
            let contextFull = cache.count >= cache.capacity
            if lengthReached || contextFull {
                visible += tail()
                summary.finishReason = stops.stopped ? .stopString : (lengthReached ? .maxTokens : .contextFull)
                try onEvent(.token(id: token, text: visible))
                break
            }
            try onEvent(.token(id: token, text: visible))
            if isCancelled() { throw CancellationError() }
            logits = try languageModel.model.decodeStep(token, cache: cache)
            cachedTokens.append(token)
        }
        summary.decodeSeconds = seconds(clock.now - prefilled)
        try onEvent(.finished(summary))
        return summary
    }

    private func begin() throws {
        try lock.withLock {
            guard !busy else { throw RuntimeError("this session is already generating; use one session per concurrent request") }
            busy = true
        }
    }

    private func end() { lock.withLock { busy = false } }

    private func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
}
