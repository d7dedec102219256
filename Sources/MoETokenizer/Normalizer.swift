import Foundation

let spaceSymbol: [UInt8] = [0xE2, 0x96, 0x81]  // U+2581, SentencePiece's whitespace marker

/// SentencePiece's text normalizer: optional charsmap rules, whitespace trimming and collapsing,
/// the dummy prefix and escaping spaces as U+2581. Works on UTF-8 bytes like the library.
struct Normalizer: Sendable {
    let addDummyPrefix: Bool
    let removeExtraWhitespaces: Bool
    let escapeWhitespaces: Bool
    let treatWhitespaceAsSuffix: Bool
    let charsMap: CharsMap?
    /// User-defined pieces pass through unnormalized.
    let userDefined: ByteTrie?

    init(spec: Sentencepiece_NormalizerSpec, treatWhitespaceAsSuffix: Bool, userDefined: ByteTrie?) throws {
        addDummyPrefix = spec.addDummyPrefix
        removeExtraWhitespaces = spec.removeExtraWhitespaces
        escapeWhitespaces = spec.escapeWhitespaces
        self.treatWhitespaceAsSuffix = treatWhitespaceAsSuffix
        charsMap = spec.precompiledCharsmap.isEmpty ? nil : try CharsMap(blob: spec.precompiledCharsmap)
        self.userDefined = (userDefined?.isEmpty ?? true) ? nil : userDefined
        if charsMap == nil && !spec.normalizationRuleTsv.isEmpty {
            throw TokenizerError.unsupportedModel("normalization_rule_tsv without a precompiled charsmap")
        }
    }

    func normalize(_ text: String) -> [UInt8] {
        let utf8 = Array(text.utf8)
        return utf8.withUnsafeBufferPointer { normalize($0) }
    }

    func normalize(_ input: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        var start = 0
        let end = input.count
        if end == 0 { return [] }
        var out: [UInt8] = []
        out.reserveCapacity(end * 3)

        // Returns the piece for the next prefix as (bytes, consumed).
        func next(_ pos: Int) -> (ArraySlice<UInt8>, Int) {
            if let ud = userDefined {
                let n = ud.longestPrefix(input, from: pos, to: end)
                if n > 0 { return (ArraySlice(input[pos..<pos + n]), n) }
            }
            if let map = charsMap, let (len, rep) = map.longestMatch(input, from: pos, to: end) {
                return (rep, len)
            }
            // Swift strings are valid UTF-8, so the character is always well formed.
            let n = min(utf8CharLength(input[pos]), end - pos)
            return (ArraySlice(input[pos..<pos + n]), n)
        }

        if removeExtraWhitespaces {
            while start < end {
                let (p, n) = next(start)
                guard p.count == 1 && p.first == 0x20 else { break }
                start += n
            }
        }
        if start == end { return [] }

        let addSpace = {
            if escapeWhitespaces { out.append(contentsOf: spaceSymbol) } else { out.append(0x20) }
        }
        if !treatWhitespaceAsSuffix && addDummyPrefix { addSpace() }

        var isPrevSpace = removeExtraWhitespaces
        while start < end {
            var (p, n) = next(start)
            if isPrevSpace { while p.first == 0x20 { p = p.dropFirst() } }
            if !p.isEmpty {
                for b in p {
                    if escapeWhitespaces && b == 0x20 { out.append(contentsOf: spaceSymbol) } else { out.append(b) }
                }
                isPrevSpace = p.last == 0x20
            }
            start += n
            if !removeExtraWhitespaces { isPrevSpace = false }
        }

        if removeExtraWhitespaces {
            let space: [UInt8] = escapeWhitespaces ? spaceSymbol : [0x20]
            while out.count >= space.count && Array(out[(out.count - space.count)...]) == space {
                out.removeLast(space.count)
            }
        }
        if treatWhitespaceAsSuffix && addDummyPrefix { addSpace() }
        return out
    }
}
