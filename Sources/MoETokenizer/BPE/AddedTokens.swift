import Foundation

/// One entry of tokenizer.json's `added_tokens`, with the flags that change how it is matched.
struct AddedToken: Sendable, Equatable {
    var content: String
    var id: Int32
    var special: Bool
    var lstrip = false
    var rstrip = false
    var singleWord = false
    /// Matched in the normalized text (its content normalized too) instead of the raw text.
    var normalized = false
}

/// Finds added tokens inside a text the way the `tokenizers` library's AddedVocabulary does:
/// leftmost-longest matches over the raw text for tokens with `normalized: false`, then over each
/// normalized remaining piece for the others; `single_word` drops a match touching a letter or
/// digit, `lstrip`/`rstrip` take the whitespace beside it into the token.
struct AddedTokenMatcher: Sendable {
    private let trie: ByteTrie
    private let tokens: [AddedToken]      // by trie value

    init(_ tokens: [AddedToken], contentOf: (AddedToken) -> String) {
        self.tokens = tokens
        var duplicates: [Int] = []
        trie = ByteTrie(entries: tokens.enumerated().map { (Array(contentOf($0.element).utf8), Int32($0.offset)) },
                        duplicates: &duplicates)
    }

    var isEmpty: Bool { tokens.isEmpty }

    /// A piece of text: a run of bytes that is either an added token's id or text still to encode.
    enum Piece { case token(Int32), text(Range<Int>) }

    /// Splits `text` (UTF-8) into added tokens and the text between them. With `skipSpecial`
    /// special tokens are not matched (the library's `encode_special_tokens`).
    func split(_ text: [UInt8], skipSpecial: Bool) -> [Piece] {
        guard !tokens.isEmpty else { return [.text(0..<text.count)] }
        var pieces: [Piece] = []
        var offset = 0          // end of the previous piece
        var i = 0
        text.withUnsafeBufferPointer { buf in
            while i < buf.count {
                let n = trie.longestPrefix(buf, from: i, to: buf.count)
                guard n > 0, let index = trie.lookup(buf, i..<(i + n)) else {
                    i += 1
                    continue
                }
                let token = tokens[Int(index)]
                var start = i, stop = i + n
                i = stop
                if skipSpecial && token.special { continue }
                if token.singleWord {
                    let before = start == 0 || !Self.isWordChar(lastScalar(buf, before: start))
                    let after = stop == buf.count || !Self.isWordChar(firstScalar(buf, at: stop))
                    if !before || !after { continue }
                }
                if token.lstrip {
                    var s = start
                    while s > offset, let (scalar, len) = scalarEnding(buf, at: s), scalar.properties.isWhitespace { s -= len }
                    start = max(s, offset)
                }
                if token.rstrip {
                    while stop < buf.count, let (scalar, len) = scalarStarting(buf, at: stop), scalar.properties.isWhitespace { stop += len }
                }
                if offset < start { pieces.append(.text(offset..<start)) }
                pieces.append(.token(token.id))
                offset = stop
                i = max(i, stop)
            }
        }
        if offset < text.count { pieces.append(.text(offset..<text.count)) }
        return pieces
    }

    /// A word character as the library's single_word check sees it (regex `\w`: Alphabetic,
    /// marks, decimal digits, connector punctuation such as `_`, and the join controls).
    static func isWordChar(_ s: Unicode.Scalar?) -> Bool {
        guard let s else { return false }
        let p = s.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }
}

private func isContinuation(_ b: UInt8) -> Bool { b & 0xC0 == 0x80 }

/// The scalar that ends just before byte `end`, and its length in bytes.
private func scalarEnding(_ buf: UnsafeBufferPointer<UInt8>, at end: Int) -> (Unicode.Scalar, Int)? {
    guard end > 0 else { return nil }
    var s = end - 1
    while s > 0 && isContinuation(buf[s]) && end - s < 4 { s -= 1 }
    guard let scalar = scalarStarting(buf, at: s), scalar.1 == end - s else { return nil }
    return scalar
}

private func lastScalar(_ buf: UnsafeBufferPointer<UInt8>, before end: Int) -> Unicode.Scalar? { scalarEnding(buf, at: end)?.0 }
private func firstScalar(_ buf: UnsafeBufferPointer<UInt8>, at start: Int) -> Unicode.Scalar? { scalarStarting(buf, at: start)?.0 }

/// The scalar that starts at byte `start` (valid UTF-8 is assumed: the text came from a String).
private func scalarStarting(_ buf: UnsafeBufferPointer<UInt8>, at start: Int) -> (Unicode.Scalar, Int)? {
    guard start < buf.count else { return nil }
    var decoder = UTF8()
    var it = buf[start...].makeIterator()
    guard case .scalarValue(let s) = decoder.decode(&it) else { return nil }
    return (s, UTF8.width(s))
}
