import Foundation
import XCTest
@testable import MoETokenizer

/// The byte-level BPE tokenizer against the `tokenizers` library's ids and decodings
/// (tools/make_bpe_fixtures.py; Tests/Fixtures/tokenizer_bpe).
final class ByteLevelBPEReferenceTests: XCTestCase {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer_bpe")
    static let names = ["qwen2_bpe", "llama3_bpe", "gpt2_bpe"]

    struct Input: Decodable { let text: String; let kind: String }
    struct Expected: Decodable { let ids: [Int32]; let decoded: String; let plain_ids: [Int32]; let with_specials: [Int32] }
    struct Decoded: Decodable { let ids: [Int32]; let decoded: String; let skipped: String }

    static func jsonLines<T: Decodable>(_ name: String, as: T.Type) throws -> [T] {
        let data = try Data(contentsOf: directory.appendingPathComponent(name))
        return try data.split(separator: 0x0A).map { try JSONDecoder().decode(T.self, from: Data($0)) }
    }

    static func tokenizer(_ name: String) throws -> Tokenizer {
        try Tokenizer(directory: directory.appendingPathComponent(name))
    }

    func testIdsEqualTheLibrary() throws {
        let inputs = try Self.jsonLines("inputs.jsonl", as: Input.self)
        XCTAssertGreaterThanOrEqual(inputs.filter { $0.kind == "heldout" }.count, 300)
        for name in Self.names {
            let tok = try Self.tokenizer(name)
            XCTAssertNotNil(tok.byteLevelBPE, name)
            let expected = try Self.jsonLines("\(name).expected.jsonl", as: Expected.self)
            XCTAssertEqual(inputs.count, expected.count)
            var matched = 0, plainMatched = 0
            for (input, want) in zip(inputs, expected) {
                let ids = tok.encode(input.text)
                if ids == want.ids { matched += 1 } else { XCTFail("\(name): \(visible(input.text)): \(ids) != \(want.ids)") }
                let plain = tok.encode(input.text, parseSpecialTokens: false)
                if plain == want.plain_ids { plainMatched += 1 } else { XCTFail("\(name) plain: \(visible(input.text)): \(plain) != \(want.plain_ids)") }
                XCTAssertEqual(tok.encodePrompt(input.text), want.with_specials, "\(name) with specials: \(visible(input.text))")
                XCTAssertEqual(tok.decode(want.ids), want.decoded, "\(name) decode: \(visible(input.text))")
            }
            print("\(name): \(matched)/\(inputs.count) inputs give the library's ids, \(plainMatched)/\(inputs.count) without special tokens")
        }
    }

    struct SplitCase: Decodable { let text: String; let qwen2: [String]; let llama3: [String]; let gpt2: [String] }

    /// The hand-written split matcher cuts random tricky strings exactly where Oniguruma does.
    func testSplitPatternsEqualOniguruma() throws {
        let cases = try Self.jsonLines("split_cases.jsonl", as: SplitCase.self)
        XCTAssertEqual(cases.count, 1500)
        for c in cases {
            let scalars = Array(c.text.unicodeScalars)
            for (pattern, want) in [(SplitPattern.qwen2, c.qwen2), (.llama3, c.llama3), (.gpt2, c.gpt2)] {
                let pieces = pattern.split(scalars).map { String(String.UnicodeScalarView(scalars[$0])) }
                XCTAssertEqual(pieces, want, "\(pattern) \(visible(c.text))")
            }
        }
    }

    struct RandomCase: Decodable { let text: String; let ids: [Int32] }

    /// Random strings that stress NFC (marks in both orders, jamo, singletons, exclusions) and splitting.
    func testRandomStringsEqualTheLibrary() throws {
        for name in Self.names {
            let tok = try Self.tokenizer(name)
            let cases = try Self.jsonLines("\(name).random.jsonl", as: RandomCase.self)
            XCTAssertEqual(cases.count, 500)
            var matched = 0
            for c in cases {
                let ids = tok.encode(c.text)
                if ids == c.ids { matched += 1 } else { XCTFail("\(name): \(visible(c.text)): \(ids) != \(c.ids)") }
            }
            print("\(name): \(matched)/\(cases.count) random strings give the library's ids")
        }
    }

    /// Where Foundation's NFC on Linux goes wrong and NFC.normalize does what the library does
    /// (expected values from tokenizers' NFC normalizer).
    func testNFCWorkarounds() {
        func scalars(_ s: String) -> [UInt32] { s.unicodeScalars.map(\.value) }
        XCTAssertEqual(scalars(NFC.normalize("\u{10041}\u{301}")), [0x10041, 0x301])           // not "Á"
        XCTAssertEqual(scalars(NFC.normalize("\u{AC00}\u{11A8}")), [0xAC01])
        XCTAssertEqual(scalars(NFC.normalize("\u{1100}\u{1176}")), [0x1100, 0x1176])
        XCTAssertEqual(scalars(NFC.normalize("\u{1100}\u{1161}\u{11A8}")), [0xAC01])
        XCTAssertEqual(scalars(NFC.normalize("\u{1D15E}")), [0x1D157, 0x1D165])
        XCTAssertEqual(scalars(NFC.normalize("x\u{1D165}\u{301}\u{323}")), [0x78, 0x1D165, 0x323, 0x301])
        XCTAssertEqual(scalars(NFC.normalize("e\u{301}\u{1F642}\u{301}")), [0xE9, 0x1F642, 0x301])
        XCTAssertEqual(scalars(NFC.normalize("\u{1100}\u{340}")), [0x1100, 0x300])
    }

    struct AddedCase: Decodable { let text: String; let ids: [Int32]; let plain_ids: [Int32] }

    /// Added tokens with every flag, next to whitespace, letters and broken-off token text.
    func testAddedTokensMatchLikeTheLibrary() throws {
        let tok = try Self.tokenizer("qwen2_bpe")
        let cases = try Self.jsonLines("added_cases.jsonl", as: AddedCase.self)
        XCTAssertEqual(cases.count, 600)
        for c in cases {
            XCTAssertEqual(tok.encode(c.text), c.ids, visible(c.text))
            XCTAssertEqual(tok.encode(c.text, parseSpecialTokens: false), c.plain_ids, "plain \(visible(c.text))")
        }
    }

    func testDecodeEqualsTheLibrary() throws {
        for name in Self.names {
            let tok = try Self.tokenizer(name)
            for c in try Self.jsonLines("\(name).decode.jsonl", as: Decoded.self) {
                XCTAssertEqual(tok.decode(c.ids), c.decoded, "\(name) \(c.ids)")
                XCTAssertEqual(tok.decode(c.ids, skipSpecialTokens: true), c.skipped, "\(name) skip \(c.ids)")
            }
        }
    }

    /// Streaming yields whole characters only and adds up to `decode` (which may contain U+FFFD
    /// for bytes that never form a character).
    func testStreamingDecodeNeverSplitsACharacter() throws {
        let tok = try Self.tokenizer("qwen2_bpe")
        var sequences = try Self.jsonLines("qwen2_bpe.decode.jsonl", as: Decoded.self).map(\.ids)
        sequences += try Self.jsonLines("inputs.jsonl", as: Input.self).map { tok.encode($0.text) }
        for ids in sequences {
            var stream = tok.makeStreamingDecoder(skipSpecialTokens: false)
            var text = ""
            for id in ids {
                let piece = stream.push(id)
                text += piece
            }
            text += stream.finish()
            XCTAssertEqual(text, tok.decode(ids), "\(ids)")
        }
        // An emoji split over byte pieces arrives as one character.
        let ids = tok.encode("🙂")
        XCTAssertGreaterThan(ids.count, 1)
        var stream = tok.makeStreamingDecoder()
        let parts = ids.map { stream.push($0) }
        XCTAssertEqual(parts.filter { !$0.isEmpty }, ["🙂"])
        XCTAssertFalse(parts.joined().contains("\u{FFFD}"))
    }

    func testSpecialTokensAndPromptFlags() throws {
        let qwen = try Self.tokenizer("qwen2_bpe")
        XCTAssertEqual(qwen.specialTokenID("<|im_end|>"), qwen.byteLevelBPE?.id(for: "<|im_end|>"))
        XCTAssertEqual(qwen.eosID, qwen.specialTokenID("<|im_end|>"))
        XCTAssertTrue(qwen.stopIDs.contains(qwen.eosID!))
        XCTAssertFalse(qwen.addsBOS)
        XCTAssertNil(qwen.bosID)
        let text = "<|im_start|>user\nhi<|im_end|>"
        XCTAssertEqual(qwen.decode(qwen.encode(text)), text)
        XCTAssertEqual(qwen.decode(qwen.encode(text), skipSpecialTokens: true), "user\nhi")
        let llama = try Self.tokenizer("llama3_bpe")
        XCTAssertTrue(llama.addsBOS)
        XCTAssertEqual(llama.encodePrompt("x").first, llama.specialTokenID("<|begin_of_text|>"))
    }

    func testUnsupportedFilesAreRefusedByName() throws {
        let url = Self.directory.appendingPathComponent("qwen2_bpe/tokenizer.json")
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        func refuse(_ change: (inout [String: Any]) -> Void, mentioning word: String) {
            var json = original
            change(&json)
            let data = try! JSONSerialization.data(withJSONObject: json)
            XCTAssertThrowsError(try ByteLevelBPETokenizer(data: data)) { error in
                XCTAssertTrue("\(error)".contains(word), "\(error)")
            }
        }
        refuse({ $0["normalizer"] = ["type": "NFKC"] }, mentioning: "normalizer NFKC")
        refuse({ $0["decoder"] = ["type": "Metaspace"] }, mentioning: "decoder Metaspace")
        refuse({ j in
            var pre = j["pre_tokenizer"] as! [String: Any]
            var list = pre["pretokenizers"] as! [[String: Any]]
            list[0]["pattern"] = ["Regex": "\\w+"]
            pre["pretokenizers"] = list
            j["pre_tokenizer"] = pre
        }, mentioning: "Split regex")
        refuse({ j in
            var model = j["model"] as! [String: Any]
            model["type"] = "Unigram"
            j["model"] = model
        }, mentioning: "model type Unigram")
        refuse({ j in
            var model = j["model"] as! [String: Any]
            model["merges"] = [["zz", "qq"]]
            j["model"] = model
        }, mentioning: "merge 0")
        XCTAssertThrowsError(try ByteLevelBPETokenizer(data: Data("{\"model\": 3}".utf8)))
        XCTAssertThrowsError(try ByteLevelBPETokenizer(data: Data("not json".utf8)))
    }

    /// 1 MB of mixed text; a release build encodes it in a fraction of a second (see docs/tokenizer.md).
    func testEncodesAMegabyte() throws {
        let tok = try Self.tokenizer("qwen2_bpe")
        let lines = try Self.jsonLines("inputs.jsonl", as: Input.self).filter { $0.kind == "heldout" }.map(\.text)
        var text = ""
        while text.utf8.count < 1 << 20 { text += lines.joined(separator: "\n") }
        let start = Date()
        let ids = tok.encode(text)
        let seconds = Date().timeIntervalSince(start)
        print("qwen2_bpe: encoded \(text.utf8.count) bytes into \(ids.count) ids in \(String(format: "%.2f", seconds)) s")
        XCTAssertEqual(tok.decode(ids), NFC.normalize(text))
    }
}
