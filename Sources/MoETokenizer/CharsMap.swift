import Foundation

/// SentencePiece's precompiled normalization map: `<u32 trie size><double-array trie><strings>`.
/// The trie (darts-clone layout) maps UTF-8 prefixes to offsets of NUL-terminated replacements.
struct CharsMap: Sendable {
    private let units: [UInt32]
    private let strings: [UInt8]

    init(blob: Data) throws {
        let bytes = [UInt8](blob)
        guard bytes.count > 4 else {
            throw TokenizerError.invalidModel("precompiled_charsmap is too short (\(bytes.count) bytes)")
        }
        let trieSize = Int(UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24)
        guard trieSize <= bytes.count - 4 else {
            throw TokenizerError.invalidModel("precompiled_charsmap trie size \(trieSize) exceeds the blob (\(bytes.count) bytes)")
        }
        guard trieSize >= 4 else {
            throw TokenizerError.invalidModel("precompiled_charsmap trie is empty")
        }
        var units = [UInt32](repeating: 0, count: trieSize / 4)
        for i in 0..<units.count {
            let o = 4 + i * 4
            units[i] = UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24
        }
        self.units = units
        self.strings = Array(bytes[(4 + trieSize)...])
    }

    /// Longest rule matching a prefix of `input[start..<end]`: (matched length, replacement).
    /// Follows darts-clone's commonPrefixSearch; out-of-range nodes end the search.
    func longestMatch(_ input: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int) -> (Int, ArraySlice<UInt8>)? {
        guard !units.isEmpty else { return nil }
        var nodePos = Int(Self.offset(units[0]))
        var bestLength = 0
        var bestValue = 0
        var i = start
        while i < end {
            let key = input[i]
            nodePos ^= Int(key)
            guard nodePos < units.count else { break }
            let unit = units[nodePos]
            guard Self.label(unit) == UInt32(key) else { break }
            nodePos ^= Int(Self.offset(unit))
            i += 1
            if Self.hasLeaf(unit) {
                guard nodePos < units.count else { break }
                // Later matches are longer, which is what SentencePiece keeps.
                bestLength = i - start
                bestValue = Int(units[nodePos] & 0x7FFF_FFFF)
            }
        }
        guard bestLength > 0 else { return nil }
        guard bestValue < strings.count else { return (bestLength, []) }
        var e = bestValue
        while e < strings.count && strings[e] != 0 { e += 1 }
        return (bestLength, strings[bestValue..<e])
    }

    @inline(__always) private static func hasLeaf(_ u: UInt32) -> Bool { (u >> 8) & 1 == 1 }
    @inline(__always) private static func label(_ u: UInt32) -> UInt32 { u & (0x8000_0000 | 0xFF) }
    @inline(__always) private static func offset(_ u: UInt32) -> UInt32 {
        (u >> 10) << ((u & (1 << 9)) >> 6)
    }
}
