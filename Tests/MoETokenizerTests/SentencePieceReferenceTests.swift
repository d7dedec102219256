import Foundation
import XCTest
@testable import MoETokenizer

/// Compares encoding and decoding with the sentencepiece library's output on the same inputs.
final class SentencePieceReferenceTests: XCTestCase {
    func testEncodeMatchesLibrary() throws {
        let inputs = try Fixtures.lines("inputs.txt")
        XCTAssertGreaterThan(inputs.count, 300)
        for name in Fixtures.modelNames {
            let sp = try SentencePieceTokenizer(modelURL: Fixtures.url("\(name).model"))
            let expected = try Fixtures.idLines("\(name).ids.txt")
            XCTAssertEqual(expected.count, inputs.count, name)
            var mismatches = 0
            for (i, text) in inputs.enumerated() where i < expected.count {
                let got = sp.encode(text)
                if got != expected[i] {
                    mismatches += 1
                    if mismatches <= 5 {
                        XCTFail("\(name) line \(i + 1) \"\(visible(text))\": got \(got.map { sp.piece(for: $0) }) expected \(expected[i].map { sp.piece(for: $0) })")
                    }
                }
            }
            XCTAssertEqual(mismatches, 0, "\(name): \(mismatches) of \(inputs.count) lines differ")
        }
    }

    /// Runs of repeated characters: several segmentations have exactly equal scores (the same
    /// pieces in another order), and the library's tie-breaking decides.
    func testTiesMatchLibrary() throws {
        let inputs = try Fixtures.lines("ties.txt")
        XCTAssertGreaterThan(inputs.count, 400)
        for name in ["unigram_identity", "unigram_nfkc_bf", "unigram_unused", "bpe_identity_bf", "bpe_nfkc"] {
            let sp = try SentencePieceTokenizer(modelURL: Fixtures.url("\(name).model"))
            let expected = try Fixtures.idLines("\(name).ties.ids.txt")
            XCTAssertEqual(expected.count, inputs.count, name)
            var mismatches = 0
            for (i, text) in inputs.enumerated() where i < expected.count && sp.encode(text) != expected[i] {
                mismatches += 1
                if mismatches <= 3 {
                    XCTFail("\(name) \"\(text)\": got \(sp.encode(text)) expected \(expected[i])")
                }
            }
            XCTAssertEqual(mismatches, 0, "\(name): \(mismatches) of \(inputs.count) tie cases differ")
        }
    }

    func testDecodeMatchesLibrary() throws {
        for name in Fixtures.modelNames {
            let sp = try SentencePieceTokenizer(modelURL: Fixtures.url("\(name).model"))
            for (idsFile, textFile) in [("ids.txt", "decoded.jsonl"), ("random_ids.txt", "random_decoded.jsonl")] {
                let ids = try Fixtures.idLines("\(name).\(idsFile)")
                let texts = try Fixtures.jsonLines("\(name).\(textFile)")
                XCTAssertEqual(ids.count, texts.count)
                var mismatches = 0
                for (i, seq) in ids.enumerated() where i < texts.count {
                    let got = sp.decode(seq)
                    if got != texts[i] {
                        mismatches += 1
                        if mismatches <= 5 {
                            XCTFail("\(name) \(idsFile) line \(i + 1) \(seq): got \"\(visible(got))\" expected \"\(visible(texts[i]))\"")
                        }
                    }
                }
                XCTAssertEqual(mismatches, 0, "\(name) \(idsFile)")
            }
        }
    }

    func testPiecesMatchLibrary() throws {
        let inputs = try Fixtures.lines("inputs.txt")
        for name in ["bpe_identity_bf", "unigram_nfkc_bf"] {
            let sp = try SentencePieceTokenizer(modelURL: Fixtures.url("\(name).model"))
            let pieces = try Fixtures.lines("\(name).pieces.jsonl").map {
                try JSONDecoder().decode([String].self, from: Data($0.utf8))
            }
            for (i, text) in inputs.enumerated() where i < pieces.count {
                XCTAssertEqual(sp.encodeAsPieces(text), pieces[i], "\(name) line \(i + 1)")
            }
        }
    }
}
