import Foundation
import MoERuntime

/// A small seeded mutator (bit flips, byte writes, interesting integers, truncation, insertion,
/// deletion, duplication), for a smoke run of the targets without libFuzzer: the normal test
/// suite runs it, so CI needs no sanitizer build. Deterministic for a given seed.
public struct ByteMutator {
    private var random: SplitMix64

    public init(seed: UInt64) { random = SplitMix64(state: seed) }

    private mutating func next() -> UInt64 { random.next() }

    private mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }

    /// Little-endian values that sit on the edges parsers check (lengths, counts, offsets).
    static let interesting: [UInt64] = [0, 1, 2, 7, 8, 63, 64, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFF_FFFF,
                                        0xFFFF_FFFF, 1 << 40, 0x7FFF_FFFF_FFFF_FFFF, UInt64.max]
    /// Text that matters to the JSON and number parsers.
    static let tokens: [String] = ["-1", "0", "1e308", "18446744073709551616", "9223372036854775807", "1.5",
                                   "null", "true", "[]", "{}", "\"\"", "\\u0000", "[[[[[[[[", "\"a\":", ","]

    /// One to four mutations of `data`.
    public mutating func mutate(_ data: Data) -> Data {
        var bytes = [UInt8](data)
        for _ in 0...below(4) {
            switch below(8) {
            case 0 where !bytes.isEmpty:
                let bit = below(bytes.count * 8)
                bytes[bit / 8] ^= 1 << UInt8(bit % 8)
            case 1 where !bytes.isEmpty:
                bytes[below(bytes.count)] = UInt8(truncatingIfNeeded: next())
            case 2 where bytes.count >= 8:
                let at = below(bytes.count - 7)
                let width = [1, 2, 4, 8][below(4)]
                var value = Self.interesting[below(Self.interesting.count)]
                if below(2) == 0 { value = value &+ (below(2) == 0 ? 1 : UInt64.max) }   // ±1
                for i in 0..<width { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
            case 3:
                bytes.removeLast(below(bytes.count + 1) / (below(2) == 0 ? 1 : 16))
            case 4:
                let token = Self.tokens[below(Self.tokens.count)]
                bytes.insert(contentsOf: token.utf8, at: below(bytes.count + 1))
            case 5 where !bytes.isEmpty:
                let at = below(bytes.count)
                bytes.removeSubrange(at..<min(bytes.count, at + 1 + below(16)))
            case 6 where !bytes.isEmpty:
                let at = below(bytes.count)
                let chunk = bytes[at..<min(bytes.count, at + 1 + below(64))]
                bytes.insert(contentsOf: chunk, at: below(bytes.count + 1))
            default:
                bytes.insert(UInt8(truncatingIfNeeded: next()), at: below(bytes.count + 1))
            }
        }
        return Data(bytes)
    }
}
