import Foundation
import MoEFormat
import MoETestSupport
import MoETokenizer
@testable import MoERuntime

extension Fixtures {
    static func model(_ name: String) throws -> ErnieModel {
        try ModelLoader.model(at: checkpoint(name).path)
    }
}

/// max |a − b| / max |b| over one row.
func relativeError(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Float {
    var diff: Float = 0, scale: Float = 0
    for (x, y) in zip(a, b) {
        diff = max(diff, abs(x - y))
        scale = max(scale, abs(y))
    }
    return diff / max(scale, .leastNormalMagnitude)
}

/// A tokenizer over a made-up vocabulary for tests that need text without a real tokenizer:
/// id i < 100 is the word "w<i>" with a leading space; ids 100...103 are the UTF-8 bytes of
/// "é" (C3 A9) and "€" (E2 82 AC, split as 102, 103, 104); 105 is eos.
struct WordTokenizer: TextTokenizer {
    var bosTokenID: Int32? { 1 }
    var stopTokenIDs: Set<Int32> { [105] }

    func chatPrompt(_ messages: [ChatMessage]) throws -> String {
        messages.map(\.content).joined(separator: " ")
    }

    func encodePrompt(_ text: String) throws -> [Int32] { try encode(text, addBOS: true, parseSpecialTokens: true) }

    func encode(_ text: String, addBOS: Bool, parseSpecialTokens: Bool) throws -> [Int32] {
        let words = text.split(separator: " ").map { word -> Int32 in
            guard word.hasPrefix("w"), let id = Int32(word.dropFirst()), (2..<100).contains(id) else { return 0 }
            return id
        }
        return (addBOS ? [1] : []) + words
    }

    func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        var bytes: [UInt8] = []
        for id in ids {
            switch id {
            case 0, 1, 105: if !skipSpecialTokens { bytes += Array("<\(id)>".utf8) }
            case 100: bytes.append(0xC3)
            case 101: bytes.append(0xA9)
            case 102: bytes.append(0xE2)
            case 103: bytes.append(0x82)
            case 104: bytes.append(0xAC)
            default: bytes += Array(" w\(id)".utf8)
            }
        }
        if bytes.first == 0x20 { bytes.removeFirst() }  // SentencePiece drops the leading space
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Tests/Fixtures/eval/expected.json: transformers' perplexity, KL and top-1 of one fixture
/// model against another for several windowings (tools/make_eval_fixture.py).
struct EvalFixture: Decodable {
    struct Result: Decodable {
        let context, windows, predicted_tokens: Int
        let total_nll, perplexity, reference_perplexity, mean_kl, top1_agreement: Double
    }
    let model, reference: String
    let ids: [Int32]
    let results: [Result]

    static func load() throws -> EvalFixture {
        try JSONDecoder().decode(EvalFixture.self, from: Data(contentsOf: Fixtures.root.appendingPathComponent("eval/expected.json")))
    }
}
