import Foundation
import XCTest

/// Access to the committed reference data in Tests/Fixtures/tokenizer.
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer")

    static let modelNames = ["bpe_identity_bf", "bpe_nfkc", "bpe_raw_ws", "bpe_ws_suffix", "bpe_unused",
                                     "unigram_nfkc_bf", "unigram_identity", "unigram_unused"]

    static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }

    static func data(_ name: String) throws -> Data { try Data(contentsOf: url(name)) }

    /// Lines split on "\n" bytes only (inputs contain \r, U+2028 and other separators).
    static func lines(_ name: String) throws -> [String] {
        let bytes = [UInt8](try data(name))
        var parts = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map {
            String(decoding: $0, as: UTF8.self)
        }
        if parts.last == "" { parts.removeLast() }
        return parts
    }

    static func idLines(_ name: String) throws -> [[Int32]] {
        try lines(name).map { $0.split(separator: " ").map { Int32($0)! } }
    }

    static func jsonLines(_ name: String) throws -> [String] {
        try lines(name).map { try JSONDecoder().decode(String.self, from: Data($0.utf8)) }
    }
}

/// Describes a string with escapes so mismatches in whitespace and controls are visible.
func visible(_ s: String) -> String {
    s.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F ? String($0) : "\\u{\(String($0.value, radix: 16))}" }.joined()
}
