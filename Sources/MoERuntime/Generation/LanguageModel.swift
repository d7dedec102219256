import MoETokenizer

/// A model with the tokenizer that goes with it: what an app loads once and generates from.
public final class LanguageModel: Sendable {
    public let model: ErnieModel
    public let tokenizer: any TextTokenizer
    /// Generating any of these ends the answer (by default the tokenizer's stop ids and
    /// config.json's eos id; `load(at:)` adds generation_config.json's).
    public let stopTokenIDs: Set<Int32>
    /// Sampling defaults from generation_config.json (`load(at:)` reads them).
    public let generationDefaults: GenerationDefaults

    public init(model: ErnieModel, tokenizer: any TextTokenizer, stopTokenIDs: Set<Int32>? = nil,
                generationDefaults: GenerationDefaults = .none) {
        self.model = model
        self.tokenizer = tokenizer
        self.generationDefaults = generationDefaults
        var ids = stopTokenIDs ?? []
        if stopTokenIDs == nil {
            ids.formUnion(tokenizer.stopTokenIDs)
            if let eos = model.config.eosTokenID, let id = Int32(exactly: eos) { ids.insert(id) }
        }
        self.stopTokenIDs = ids
    }

    /// The longest sequence (prompt + answer) the model accepts.
    public var contextLength: Int { model.config.maxPositionEmbeddings }

    /// A fresh conversation state with its own KV cache.
    public func makeSession(contextLength: Int? = nil) -> Session {
        Session(model: self, contextLength: contextLength)
    }
}

extension LanguageModel {
    /// The prompt text of a conversation in the model's chat format (encode it with
    /// `addBOS: false`: the format carries its own begin marker).
    /// `variables` go to the model's chat template (e.g. `enable_thinking` for Qwen3).
    public func chatPrompt(_ messages: [ChatMessage], variables: [String: JinjaValue] = [:]) throws -> String {
        try tokenizer.chatPrompt(messages, variables: variables)
    }

    /// Streams a continuation of `prompt` in a fresh session.
    public func generate(prompt: String, options: GenerationOptions = GenerationOptions())
        -> AsyncThrowingStream<GenerationEvent, Error> {
        makeSession().generate(prompt: prompt, options: options)
    }
}
