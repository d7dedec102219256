/// Turns generated ids into text incrementally. `push` returns the text that became complete
/// with that id (possibly empty while a multi-byte character is still arriving as byte pieces);
/// `finish` returns what is left. The concatenated output equals `Tokenizer.decode` for the
/// same ids (for models without a denormalizer, which SentencePiece models rarely have).
public struct StreamingDecoder: Sendable {
    private let tokenizer: Tokenizer
    private let skipSpecialTokens: Bool
    private var state = PieceDecoder()
    private var buffer: [UInt8] = []

    init(tokenizer: Tokenizer, skipSpecialTokens: Bool) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    public mutating func push(_ id: Int32) -> String {
        if let t = tokenizer.tokenText[id] {
            if tokenizer.specialIDs.contains(id) && skipSpecialTokens { return "" }
            state.finish(into: &buffer)
            state = PieceDecoder()
            buffer.append(contentsOf: t.utf8)
        } else {
            state.push(id, model: tokenizer.sentencePiece, into: &buffer)
        }
        return take()
    }

    public mutating func finish() -> String {
        state.finish(into: &buffer)
        state = PieceDecoder()
        return take()
    }

    private mutating func take() -> String {
        defer { buffer.removeAll(keepingCapacity: true) }
        return String(decoding: buffer, as: UTF8.self)
    }
}
