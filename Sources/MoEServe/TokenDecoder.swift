import MoERuntime

/// Turns one sequence's logits into its next token and visible text, step by step, with the same
/// rules as `Session.generate`: sampling, end-of-sequence ids, stop strings held back until they
/// are ruled out, `maxTokens`, and a full context. The scheduler owns one per running sequence.
struct TokenDecoder {
    private var sampler: Sampler
    private var text: TextStream
    private var stops: StopMatcher
    private let stopTokenIDs: Set<Int32>
    let maxTokens: Int
    private(set) var generated = 0

    struct Step {
        var token: Int32
        var text: String
        /// Set when this token ends the sequence.
        var finish: FinishReason?
    }

    /// `ignoreEOS`: end-of-sequence ids do not end the sequence (benchmarks).
    init(model: LanguageModel, prompt: [Int32], options: GenerationOptions, ignoreEOS: Bool = false) {
        sampler = Sampler(options: options.sampling, prompt: prompt)
        text = TextStream(tokenizer: model.tokenizer, context: prompt)
        stops = StopMatcher(stopStrings: options.stopStrings)
        stopTokenIDs = ignoreEOS ? [] : model.stopTokenIDs
        maxTokens = options.maxTokens
    }

    /// Samples from `logits` [vocab]. `cacheFull`: the cache has no room to feed the token back.
    mutating func next(_ logits: UnsafeBufferPointer<Float>, cacheFull: Bool) -> Step {
        let token = sampler.sample(logits)
        generated += 1
        if stopTokenIDs.contains(token) {
            return Step(token: token, text: tail(), finish: .endOfSequence)
        }
        var visible = stops.append(text.append(token))
        if stops.stopped {
            return Step(token: token, text: visible, finish: .stopString)
        }
        let lengthReached = generated >= maxTokens
        if lengthReached || cacheFull {
            visible += tail()
            let reason: FinishReason = stops.stopped ? .stopString : (lengthReached ? .maxTokens : .contextFull)
            return Step(token: token, text: visible, finish: reason)
        }
        return Step(token: token, text: visible, finish: nil)
    }

    private mutating func tail() -> String { stops.append(text.flush()) + stops.flush() }
}
