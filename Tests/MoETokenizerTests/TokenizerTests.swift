import Foundation
import XCTest
@testable import MoETokenizer

/// Special tokens, the ERNIE chat template and streaming decoding on a model that holds the
/// ERNIE markers as user-defined pieces, against references made with sentencepiece and jinja2.
final class TokenizerTests: XCTestCase {
    struct ChatCase: Decodable {
        var messages: [ChatMessage]
        var add_generation_prompt: Bool
        var text: String
        var ids: [Int32]
    }
    struct SpecialCase: Decodable {
        var text: String
        var ids: [Int32]
        var plain_ids: [Int32]
    }
    struct Cases: Decodable {
        var chat: [ChatCase]
        var special: [SpecialCase]
    }

    func loadCases() throws -> Cases {
        try JSONDecoder().decode(Cases.self, from: Fixtures.data("chat_cases.json"))
    }

    func loadTokenizer() throws -> Tokenizer {
        try Tokenizer(modelData: Fixtures.data("bpe_identity_bf.model"),
                      configFiles: ["tokenizer_config.json": Fixtures.data("ernie_config/tokenizer_config.json")])
    }

    func testChatTemplateMatchesJinjaRendering() throws {
        let cases = try loadCases()
        XCTAssertEqual(cases.chat.count, 10)
        for c in cases.chat {
            XCTAssertEqual(ChatTemplate.ernie.render(messages: c.messages, addGenerationPrompt: c.add_generation_prompt),
                           c.text, "\(c.messages)")
        }
    }

    func testEncodeWithSpecialTokens() throws {
        let tok = try loadTokenizer()
        let cases = try loadCases()
        for c in cases.chat {
            XCTAssertEqual(try tok.encodeChat(c.messages, addGenerationPrompt: c.add_generation_prompt), c.ids, visible(c.text))
        }
        for c in cases.special {
            XCTAssertEqual(tok.encode(c.text), c.ids, visible(c.text))
            XCTAssertEqual(tok.encode(c.text, parseSpecialTokens: false), c.plain_ids, visible(c.text))
        }
    }

    func testSpecialTokenIDs() throws {
        let tok = try loadTokenizer()
        let sp = tok.sentencePiece!
        XCTAssertEqual(tok.bosID, sp.id(for: "<s>"))
        XCTAssertEqual(tok.eosID, sp.id(for: "</s>"))
        XCTAssertEqual(tok.unkID, 0)
        XCTAssertEqual(tok.specialTokenID("<|tool|>"), 900)
        XCTAssertEqual(tok.specialTokenID("<|end_of_sentence|>"), sp.id(for: "<|end_of_sentence|>"))
        XCTAssertEqual(tok.stopIDs, [sp.id(for: "</s>"), sp.id(for: "<|end_of_sentence|>")])
        XCTAssertEqual(tok.vocabularySize, 901)
        XCTAssertEqual(tok.encode("Hi", addBOS: true).first, tok.bosID)
        XCTAssertEqual(Array(tok.encode("Hi", addBOS: true).dropFirst()), sp.encode("Hi"))
    }

    func testDecodeSpecialTokens() throws {
        let tok = try loadTokenizer()
        let sp = tok.sentencePiece!
        let begin = try XCTUnwrap(tok.specialTokenID("<|begin_of_sentence|>"))
        let end = try XCTUnwrap(tok.specialTokenID("<|end_of_sentence|>"))
        let ids = [begin] + sp.encode("Hello world") + [end, 900]
        XCTAssertEqual(tok.decode(ids, skipSpecialTokens: true), "Hello world")
        XCTAssertEqual(tok.decode(ids, skipSpecialTokens: false), "<|begin_of_sentence|>Hello world<|end_of_sentence|><|tool|>")
    }

    /// Streaming output, concatenated, equals one-shot decoding; multi-byte characters made of
    /// byte pieces only appear once complete.
    func testStreamingDecoderMatchesDecode() throws {
        let tok = try loadTokenizer()
        let sp = tok.sentencePiece!
        var sequences = try Fixtures.idLines("bpe_identity_bf.ids.txt")
        sequences += try Fixtures.idLines("bpe_identity_bf.random_ids.txt")
        for skip in [true, false] {
            for ids in sequences {
                var stream = tok.makeStreamingDecoder(skipSpecialTokens: skip)
                var text = ""
                for id in ids {
                    let piece = stream.push(id)
                    XCTAssertFalse(piece.unicodeScalars.contains("\u{FFFD}") && !tok.decode(ids, skipSpecialTokens: skip).contains("\u{FFFD}"))
                    text += piece
                }
                text += stream.finish()
                XCTAssertEqual(text, tok.decode(ids, skipSpecialTokens: skip), "\(ids)")
            }
        }
        // A 4-byte emoji spelled as byte pieces: nothing until the last byte arrives.
        let emoji = Array("🙂".utf8).map { sp.id(for: String(format: "<0x%02X>", $0)) }
        var stream = tok.makeStreamingDecoder()
        XCTAssertEqual(emoji.dropLast().map { stream.push($0) }, ["", "", ""])
        XCTAssertEqual(stream.push(emoji[3]), "🙂")
        // An incomplete character left at the end becomes U+FFFD per byte, as the library does.
        var cut = tok.makeStreamingDecoder()
        _ = cut.push(emoji[0]); _ = cut.push(emoji[1])
        XCTAssertEqual(cut.finish(), "\u{FFFD}\u{FFFD}")
        XCTAssertEqual(sp.decode(Array(emoji.prefix(2))), "\u{FFFD}\u{FFFD}")
    }

    func testDirectoryLoading() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Fixtures.data("bpe_identity_bf.model").write(to: dir.appendingPathComponent("tokenizer.model"))
        try Fixtures.data("ernie_config/tokenizer_config.json").write(to: dir.appendingPathComponent("tokenizer_config.json"))
        try Data(#"{"<extra_tok>": 901}"#.utf8).write(to: dir.appendingPathComponent("added_tokens.json"))
        let tok = try Tokenizer(directory: dir)
        XCTAssertEqual(tok.specialTokenID("<extra_tok>"), 901)
        XCTAssertEqual(tok.encode("a<extra_tok>").last, 901)
        // Added but not special: kept when special tokens are skipped.
        XCTAssertEqual(tok.decode([901], skipSpecialTokens: true), "<extra_tok>")
        XCTAssertThrowsError(try Tokenizer(directory: dir.appendingPathComponent("missing"))) { error in
            guard case TokenizerError.fileNotFound = error else { return XCTFail("\(error)") }
        }
    }

    func testBadConfigThrows() throws {
        let model = try Fixtures.data("bpe_identity_bf.model")
        XCTAssertThrowsError(try Tokenizer(modelData: model, configFiles: ["tokenizer_config.json": Data("{not json".utf8)])) { error in
            guard case TokenizerError.invalidConfig = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try Tokenizer(modelData: model, configFiles: ["added_tokens.json": Data(#"{"x": "y"}"#.utf8)]))
    }
}
