import Foundation
import MoETestSupport
import XCTest
@testable import MoERuntime

/// The built-in tiny model against transformers' outputs (Tests/Fixtures/tiny-moe, written by
/// tools/train_tiny_moe.py).
final class TinyModelTests: XCTestCase {
    static let modelPath = Fixtures.tinyModel.path
    static let golden = Fixtures.root.appendingPathComponent("tiny-moe")

    private struct GenerateGolden: Decodable {
        struct Case: Decodable {
            let text: String
            let prompt_ids: [Int32]
            let output_ids: [Int32]
            let repetition_penalty: Double?
        }
        let eos_token_ids: [Int32]
        let cases: [Case]
    }

    /// Greedy decoding, plain and with transformers' repetition_penalty (over prompt and output).
    func testGreedyGenerationMatchesTransformersGenerate() throws {
        let golden = try JSONDecoder().decode(
            GenerateGolden.self, from: Data(contentsOf: Self.golden.appendingPathComponent("generate.json")))
        let model = try ModelLoader.model(at: Self.modelPath)
        let lm = LanguageModel(model: model, tokenizer: WordTokenizer(), stopTokenIDs: Set(golden.eos_token_ids))
        XCTAssertEqual(golden.cases.count, 8)
        XCTAssertEqual(golden.cases.filter { $0.repetition_penalty != nil }.count, 3)
        for c in golden.cases {
            var ids: [Int32] = []
            let sampling = SamplingOptions(repetitionPenalty: c.repetition_penalty ?? 1)
            try lm.makeSession().generate(tokens: c.prompt_ids, options: GenerationOptions(maxTokens: 32, sampling: sampling)) { event in
                if case .token(let id, _) = event { ids.append(id) }
            }
            XCTAssertEqual(ids, c.output_ids, "\(c.text) repetition penalty \(c.repetition_penalty ?? 1)")
        }
    }

    /// Tokenizer files that do not belong to the weights (more ids than embedding rows) are
    /// refused at load with the counts, not mid-request.
    func testTokenizerLargerThanTheEmbeddingIsRefused() throws {
        let directory = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        for name in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(at: Fixtures.checkpoint("moe_basic").appendingPathComponent(name),
                                             to: directory.appendingPathComponent(name))
        }
        for name in ["tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"] {
            try FileManager.default.copyItem(at: Fixtures.tinyModel.appendingPathComponent(name),
                                             to: directory.appendingPathComponent(name))
        }
        XCTAssertThrowsError(try LanguageModel.load(at: directory.path)) { error in
            XCTAssertTrue("\(error)".contains("the tokenizer has 3072 ids"), "\(error)")
            XCTAssertTrue("\(error)".contains("only 128 rows"), "\(error)")
        }
    }

    func testIncrementalLogitsMatchFullRecompute() throws {
        let model = try ModelLoader.model(at: Self.modelPath)
        let sequence: [Int32] = (0..<48).map { Int32(7 + ($0 * 389) % (model.config.vocabSize - 7)) }
        let full = try model.logits(sequence)
        let vocab = model.config.vocabSize
        let cache = model.makeCache()
        var step = try model.prefill(Array(sequence[..<3]), cache: cache)
        for position in 2..<sequence.count {
            XCTAssertLessThanOrEqual(relativeError(step[...], full[(position * vocab)..<((position + 1) * vocab)]), 1e-4,
                                     "position \(position)")
            if position + 1 < sequence.count { step = try model.decodeStep(sequence[position + 1], cache: cache) }
        }
    }
}
