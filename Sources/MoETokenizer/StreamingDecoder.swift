/// Turns generated ids into text incrementally. `push` returns the text that became complete
/// with that id (possibly empty while a multi-byte character is still arriving as byte pieces);
/// `finish` returns what is left. The concatenated output equals `Tokenizer.decode` for the
/// same ids (for models without a denormalizer, which SentencePiece models rarely have). For
/// byte-level BPE, whose pieces may end inside a UTF-8 character, bytes are held back until the
/// character is complete, so a pushed piece never yields a broken character.
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
        if let bpe = tokenizer.byteLevelBPE {
            if tokenizer.specialIDs.contains(id) && skipSpecialTokens { return "" }
            buffer += bpe.bytes(of: id)
            return takeComplete()
        }
        if let t = tokenizer.tokenText[id] {
            if tokenizer.specialIDs.contains(id) && skipSpecialTokens { return "" }
            state.finish(into: &buffer)
            state = PieceDecoder()
            buffer.append(contentsOf: t.utf8)
        } else {
            if let sp = tokenizer.sentencePiece { state.push(id, model: sp, into: &buffer) }
        }
        return take()
    }

    public mutating func finish() -> String {
        state.finish(into: &buffer)
        state = PieceDecoder()
        return take()
    }

    /// The buffered bytes up to the last complete character; an unfinished one stays.
    private mutating func takeComplete() -> String {
        let keep = incompleteTail(buffer)
        let text = String(decoding: buffer[..<(buffer.count - keep)], as: UTF8.self)
        buffer.removeFirst(buffer.count - keep)
        return text
    }

    private mutating func take() -> String {
        defer { buffer.removeAll(keepingCapacity: true) }
        return String(decoding: buffer, as: UTF8.self)
    }
}

/// How many bytes at the end of `bytes` begin a UTF-8 character that more bytes could still
/// complete (0 when the text ends on a character boundary or in bytes that can never be valid).
func incompleteTail(_ bytes: [UInt8]) -> Int {
    let n = bytes.count
    var back = 1
    while back <= min(3, n) {
        let lead = bytes[n - back]
        if lead & 0xC0 == 0x80 {
            back += 1
            continue
        }
        let need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
        guard need > back, lead >= 0xC2, lead <= 0xF4 else { return 0 }
        if back >= 2 {
            // The second byte's range depends on the lead (no overlongs, surrogates or > U+10FFFF).
            let second = bytes[n - back + 1]
            let range: ClosedRange<UInt8> = switch lead {
            case 0xE0: 0xA0...0xBF
            case 0xED: 0x80...0x9F
            case 0xF0: 0x90...0xBF
            case 0xF4: 0x80...0x8F
            default: 0x80...0xBF
            }
            guard range.contains(second) else { return 0 }
        }
        return back
    }
    return 0
}
