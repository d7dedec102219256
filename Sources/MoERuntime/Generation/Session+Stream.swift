extension Session {
    /// Generates on a background task and streams the events. Cancelling the consuming task (or
    /// dropping the stream) stops decoding before the next token.
    public func generate(tokens: [Int32], options: GenerationOptions) -> AsyncThrowingStream<GenerationEvent, Error> {
        AsyncThrowingStream { continuation in
            let task = Task.detached { [self] in
                do {
                    try generate(tokens: tokens, options: options, isCancelled: { Task.isCancelled }) {
                        continuation.yield($0)
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Encodes `prompt` with the model's tokenizer (BOS as `options.addBOS` says, or as the
    /// tokenizer's configuration does), then streams as `generate(tokens:options:)`.
    public func generate(prompt: String, options: GenerationOptions) -> AsyncThrowingStream<GenerationEvent, Error> {
        do {
            let tokens = try options.addBOS.map { try encode(prompt: prompt, addBOS: $0) }
                ?? languageModel.tokenizer.encodePrompt(prompt)
            return generate(tokens: tokens, options: options)
        } catch {
            return AsyncThrowingStream { $0.finish(throwing: error) }
        }
    }
}
