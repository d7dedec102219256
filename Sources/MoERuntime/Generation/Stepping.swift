/// The two steps of generation, public so that schedulers (the server's batching) can drive
/// many caches themselves.
extension ErnieModel {
    /// Runs a prompt (or the next part of one) after what `cache` holds; returns the logits of
    /// the last position [vocab].
    public func prefill(_ tokens: [Int32], cache: KVCache) throws -> [Float] {
        guard !tokens.isEmpty else { throw RuntimeError("the prompt is empty: nothing to run") }
        return try forward(tokens, cache: cache, lastOnly: true)
    }

    /// Runs one token after what `cache` holds; returns the logits of the next position [vocab].
    public func decodeStep(_ token: Int32, cache: KVCache) throws -> [Float] {
        try forward([token], cache: cache, lastOnly: true)
    }
}
