import Foundation
import XCTest
@testable import MoETokenizer

/// The project's built-in tiny model tokenizer against sentencepiece's output on its held-out
/// text and on the hard cases.
final class TinyModelTokenizerTests: XCTestCase {
    static let tinyDirectory = Fixtures.directory.deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources/moepack/Resources/tiny-moe")

    func check(_ sp: SentencePieceTokenizer, inputs: [String], ids: [[Int32]], decoded: [String], label: String) {
        XCTAssertEqual(inputs.count, ids.count, label)
        var mismatches = 0
        for (i, text) in inputs.enumerated() where i < ids.count {
            let got = sp.encode(text)
            if got != ids[i] || sp.decode(got) != decoded[i] {
                mismatches += 1
                if mismatches <= 3 { XCTFail("\(label) line \(i + 1): \"\(visible(text))\" got \(got) expected \(ids[i])") }
            }
        }
        XCTAssertEqual(mismatches, 0, label)
    }

    func testHeldoutAndHardCasesMatchLibrary() throws {
        let sp = try SentencePieceTokenizer(modelURL: Self.tinyDirectory.appendingPathComponent("tokenizer.model"))
        var heldout = [UInt8](try Data(contentsOf: Self.tinyDirectory.appendingPathComponent("heldout.txt")))
            .split(separator: 0x0A, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        if heldout.last == "" { heldout.removeLast() }
        XCTAssertGreaterThan(heldout.count, 100)
        check(sp, inputs: heldout, ids: try Fixtures.idLines("tiny_moe.ids.txt"),
              decoded: try Fixtures.jsonLines("tiny_moe.decoded.jsonl"), label: "heldout")
        check(sp, inputs: try Fixtures.lines("inputs.txt"), ids: try Fixtures.idLines("tiny_moe_hard.ids.txt"),
              decoded: try Fixtures.jsonLines("tiny_moe_hard.decoded.jsonl"), label: "hard cases")
        let randomIDs = try Fixtures.idLines("tiny_moe.random_ids.txt")
        let randomText = try Fixtures.jsonLines("tiny_moe.random_decoded.jsonl")
        for (ids, text) in zip(randomIDs, randomText) { XCTAssertEqual(sp.decode(ids), text, "\(ids)") }
    }

    /// A token's bytes are its share of the text: concatenated over a line's ids they give the
    /// decoded line, byte-fallback pieces included (the held-out text has non-ASCII characters).
    /// (This tokenizer adds no dummy prefix, so decoding drops no leading space.)
    func testTokenBytesConcatenateToTheDecodedText() throws {
        let tok = try Tokenizer(directory: Self.tinyDirectory)
        let text = try String(contentsOf: Self.tinyDirectory.appendingPathComponent("heldout.txt"), encoding: .utf8)
        var byteFallback = 0
        for line in text.split(separator: "\n").prefix(300) {
            let ids = tok.encode(String(line), addBOS: false)
            byteFallback += ids.filter { tok.sentencePiece!.pieceType(for: $0) == .byte }.count
            let joined = String(decoding: ids.flatMap { tok.tokenBytes($0) }, as: UTF8.self)
            XCTAssertEqual(joined, tok.decode(ids), String(line))
        }
        XCTAssertGreaterThan(byteFallback, 0)
        XCTAssertEqual(tok.tokenBytes(try XCTUnwrap(tok.specialTokenID("<|end_of_sentence|>"))), Array("<|end_of_sentence|>".utf8))
        XCTAssertEqual(tok.tokenBytes(tok.sentencePiece!.id(for: "<0x0A>")), [0x0A])
        XCTAssertEqual(tok.tokenBytes(Int32(tok.vocabularySize + 10)), [])
    }

    func testDirectoryWithConfigFiles() throws {
        let tok = try Tokenizer(directory: Self.tinyDirectory)
        let sp = tok.sentencePiece!
        XCTAssertEqual(sp.vocabularySize, 3072)
        XCTAssertEqual(tok.unkID, 0)
        XCTAssertEqual(tok.bosID, 1)
        XCTAssertEqual(tok.eosID, 2)
        XCTAssertEqual(tok.padID, 3)
        XCTAssertEqual(tok.specialTokenID("<|begin_of_sentence|>"), 4)
        XCTAssertEqual(tok.specialTokenID("<|end_of_sentence|>"), 5)
        XCTAssertEqual(tok.stopIDs, [2, 5])
        let messages = [ChatMessage(role: "user", content: "Who is Mr. Darcy?")]
        let ids = try tok.encodeChat(messages)
        XCTAssertEqual(ids.first, 4)
        XCTAssertEqual(Array(ids.dropFirst()), sp.encode("User: Who is Mr. Darcy?\nAssistant: "))
        // The model was trained on sentencepiece's encoding of the whole rendered chat, where the
        // markers are user-defined pieces; with this model's options splitting gives the same ids.
        XCTAssertEqual(ids, sp.encode(tok.chatTemplate.render(messages: messages)))
        XCTAssertEqual(tok.decode(ids, skipSpecialTokens: true), sp.decode(Array(ids.dropFirst())))
    }

    /// Padding the tokenizer to a larger vocabulary (as `synth` does for bench-moe) keeps every
    /// existing id and the encoding of the held-out text, and gives every new id some text.
    func testPaddingToALargerVocabularyKeepsEncodingAndDecodesNewIDs() throws {
        let data = try Data(contentsOf: Self.tinyDirectory.appendingPathComponent("tokenizer.model"))
        let original = try SentencePieceTokenizer(modelData: data)
        let padded = try SentencePieceTokenizer(modelData: SentencePieceTokenizer.padding(data, toPieces: 4000))
        XCTAssertEqual(padded.vocabularySize, 4000)
        XCTAssertEqual(try SentencePieceTokenizer.padding(data, toPieces: 3072), data)
        XCTAssertEqual(padded.bosID, original.bosID)
        XCTAssertEqual(padded.eosID, original.eosID)
        for id in Int32(0)..<3072 { XCTAssertEqual(padded.piece(for: id), original.piece(for: id)) }
        let heldout = try String(contentsOf: Self.tinyDirectory.appendingPathComponent("heldout.txt"), encoding: .utf8)
        XCTAssertEqual(padded.encode(heldout), original.encode(heldout))
        let names = Set((3072..<4000).map { padded.decode([Int32($0)]) })
        XCTAssertEqual(names.count, 928)
        XCTAssertFalse(names.contains(""))
        // A new piece is decodable, not reachable by encoding: its own text still takes old pieces.
        let text = padded.decode([3500])
        XCTAssertTrue(padded.encode(text).allSatisfy { $0 < 3072 }, text)
        XCTAssertThrowsError(try SentencePieceTokenizer.padding(Data([1, 2, 3]), toPieces: 10))
    }
}
