/// Settings of one generation request.
public struct GenerationOptions: Sendable {
    /// Most tokens to generate (the end-of-sequence token counts as one).
    public var maxTokens: Int
    public var sampling: SamplingOptions
    /// Generation ends before the first occurrence of any of these; the stop string is not returned.
    public var stopStrings: [String]
    /// Put the beginning-of-sequence id before a text prompt (chat prompts carry their own
    /// marker: false). nil: as the tokenizer's configuration says (`TextTokenizer.encodePrompt`,
    /// transformers' behaviour).
    public var addBOS: Bool?

    public init(maxTokens: Int = 256, sampling: SamplingOptions = .greedy, stopStrings: [String] = [],
                addBOS: Bool? = nil) {
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stopStrings = stopStrings
        self.addBOS = addBOS
    }

    public func validate() throws {
        guard maxTokens >= 0 else { throw RuntimeError("max tokens must be >= 0 (got \(maxTokens))") }
        try sampling.validate()
    }
}

/// Why generation ended.
public enum FinishReason: String, Sendable, Codable {
    /// The model produced an end-of-sequence token.
    case endOfSequence = "eos"
    /// A stop string appeared in the text.
    case stopString = "stop"
    /// `maxTokens` tokens were generated.
    case maxTokens = "length"
    /// The context (KV cache) is full.
    case contextFull = "context"
}

/// What a generation produces, in order: one `.token` per generated token, then `.finished`.
public enum GenerationEvent: Sendable {
    /// A generated token and the text it makes visible (often the token's text; empty while a
    /// multi-byte character or a possible stop string is incomplete, and for end-of-sequence).
    case token(id: Int32, text: String)
    case finished(GenerationSummary)
}

public struct GenerationSummary: Sendable, Codable, Equatable {
    public var finishReason: FinishReason
    public var promptTokens: Int
    /// Prompt tokens that were already in the KV cache from the previous request and not recomputed.
    public var reusedPromptTokens: Int
    public var generatedTokens: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double

    /// Prompt tokens computed per second.
    public var prefillTokensPerSecond: Double {
        prefillSeconds > 0 ? Double(promptTokens - reusedPromptTokens) / prefillSeconds : 0
    }

    /// Generated tokens per second after the first (the first comes out of the prefill).
    public var decodeTokensPerSecond: Double {
        decodeSeconds > 0 ? Double(max(generatedTokens - 1, 0)) / decodeSeconds : 0
    }
}
