/// Turns generated token ids into text chunks as they arrive. A token can end in the middle of a
/// UTF-8 character (byte fallback) and SentencePiece decodes a piece differently at the start of
/// a sequence, so each step decodes a short window that starts a few tokens back and emits only
/// the text beyond what that window's older part already produced.
public struct TextStream: Sendable {
    let tokenizer: any TextTokenizer
    private var tokens: [Int32]
    private var prefixOffset: Int
    private var readOffset: Int

    /// `context`: the prompt's ids, whose last few give the first generated token its spacing.
    public init(tokenizer: any TextTokenizer, context: [Int32] = []) {
        self.tokenizer = tokenizer
        tokens = Array(context.suffix(4))
        prefixOffset = 0
        readOffset = tokens.count
    }

    /// Adds one token and returns the text it completes (empty while a character is unfinished).
    public mutating func append(_ token: Int32) -> String {
        tokens.append(token)
        let before = decode(prefixOffset..<readOffset)
        let now = decode(prefixOffset..<tokens.count)
        guard now.unicodeScalars.count > before.unicodeScalars.count, now.unicodeScalars.last != "\u{FFFD}" else {
            return ""
        }
        prefixOffset = readOffset
        readOffset = tokens.count
        return Self.suffix(of: now, after: before)
    }

    /// Whatever is still held back (an unfinished character at the end of generation).
    public mutating func flush() -> String {
        guard readOffset < tokens.count else { return "" }
        let before = decode(prefixOffset..<readOffset)
        let now = decode(prefixOffset..<tokens.count)
        prefixOffset = tokens.count
        readOffset = tokens.count
        return Self.suffix(of: now, after: before)
    }

    private func decode(_ range: Range<Int>) -> String {
        range.isEmpty ? "" : tokenizer.decode(Array(tokens[range]), skipSpecialTokens: true)
    }

    private static func suffix(of text: String, after prefix: String) -> String {
        String(text.unicodeScalars.dropFirst(prefix.unicodeScalars.count))
    }
}
