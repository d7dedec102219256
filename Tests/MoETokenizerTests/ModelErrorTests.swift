import Foundation
import XCTest
@testable import MoETokenizer

/// Broken model files give a thrown TokenizerError, never a crash.
final class ModelErrorTests: XCTestCase {
    func assertInvalid(_ data: Data, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SentencePieceTokenizer(modelData: data), what, file: file, line: line) { error in
            guard let e = error as? TokenizerError else { return XCTFail("\(what): \(error)", file: file, line: line) }
            switch e {
            case .invalidModel, .unsupportedModel: break
            default: XCTFail("\(what): \(e)", file: file, line: line)
            }
            XCTAssertFalse(e.description.isEmpty)
        }
    }

    func testTruncatedAndGarbageModels() throws {
        let good = try Fixtures.data("unigram_nfkc_bf.model")
        assertInvalid(Data(), "empty")
        for cut in [1, 7, 100, good.count / 2, good.count - 1] {
            assertInvalid(good.prefix(cut), "truncated to \(cut)")
        }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            let junk = Data((0..<Int.random(in: 1...4096, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
            assertInvalid(junk, "random bytes")
        }
        assertInvalid(Data("this is not a protobuf".utf8), "text")
    }

    func testCorruptedCharsmapIsRejected() throws {
        // A model whose precompiled_charsmap claims more trie bytes than it has.
        var proto = try Sentencepiece_ModelProto(serializedBytes: Fixtures.data("bpe_nfkc.model"))
        proto.normalizerSpec.precompiledCharsmap = Data([0xFF, 0xFF, 0x00, 0x00, 1, 2, 3])
        assertInvalid(try proto.serializedData(), "charsmap")
        proto.normalizerSpec.precompiledCharsmap = Data([1, 0])
        assertInvalid(try proto.serializedData(), "short charsmap")
    }

    func testInconsistentVocabularyIsRejected() throws {
        let base = try Sentencepiece_ModelProto(serializedBytes: Fixtures.data("bpe_identity_bf.model"))
        var noUnk = base
        noUnk.pieces[0].type = .normal
        assertInvalid(try noUnk.serializedData(), "no unk")
        var dup = base
        dup.pieces[400].piece = dup.pieces[401].piece
        assertInvalid(try dup.serializedData(), "duplicate piece")
        var word = base
        word.trainerSpec.modelType = .word
        assertInvalid(try word.serializedData(), "word model")
        var noBytes = base
        noBytes.pieces.removeAll { $0.type == .byte }
        assertInvalid(try noBytes.serializedData(), "byte fallback without byte pieces")
    }

    /// Every Unicode scalar class encodes without crashing and round-trips where the library would.
    func testArbitraryScalarsNeverCrash() throws {
        let sp = try SentencePieceTokenizer(modelURL: Fixtures.url("bpe_identity_bf.model"))
        // Seeded, so a failure repeats (SplitMix64).
        struct Seeded: RandomNumberGenerator {
            var state: UInt64
            mutating func next() -> UInt64 {
                state &+= 0x9E37_79B9_7F4A_7C15
                var z = state
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                return z ^ (z >> 31)
            }
        }
        var rng = Seeded(state: 25)
        // U+2581 is SentencePiece's space mark: it decodes to a space, as in the library.
        func visible(_ s: String) -> Int { s.unicodeScalars.filter { $0 != " " && $0 != "\u{2581}" }.count }
        for _ in 0..<2000 {
            var s = String.UnicodeScalarView()
            for _ in 0..<Int.random(in: 0...30, using: &rng) {
                if let u = Unicode.Scalar(UInt32.random(in: 0...0x10FFFF, using: &rng)) { s.append(u) }
            }
            let text = String(s)
            let ids = sp.encode(text)
            XCTAssertTrue(ids.allSatisfy { $0 >= 0 && Int($0) < sp.vocabularySize })
            // Identity normalization with byte fallback is lossless up to whitespace trimming.
            XCTAssertEqual(visible(sp.decode(ids)), visible(text), "\(text.unicodeScalars.map { String($0.value, radix: 16) })")
        }
        XCTAssertEqual(sp.decode([-1, 99999]), "")
        XCTAssertEqual(sp.piece(for: -5), "")
    }
}
