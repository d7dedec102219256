/// GPT-2's byte-level alphabet: every byte is written as one printable character so that BPE
/// pieces are strings. Printable Latin-1 bytes (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) stand for
/// themselves; the other 68 bytes map, in order, to U+0100 and up (space is `Ġ`, newline `Ċ`).
enum ByteLevel {
    /// The character for each byte.
    static let character: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// The byte for each character of the alphabet (nil for any other character).
    static let byteOf: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (b, c) in character.enumerated() { map[c.value] = UInt8(b) }
        return map
    }()

    /// The bytes a piece string stands for, or nil when a character is outside the alphabet.
    static func bytes(ofPiece piece: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(piece.unicodeScalars.count)
        for s in piece.unicodeScalars {
            guard let b = byteOf[s.value] else { return nil }
            out.append(b)
        }
        return out
    }

    /// The piece string for raw bytes.
    static func piece(ofBytes bytes: some Sequence<UInt8>) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(character[Int(b)]) }
        return String(s)
    }
}
