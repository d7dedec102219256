import Foundation
import MoEFormat
import MoETestSupport
import XCTest
@testable import MoERuntime

/// `eval --save-reference` files: scored against them, a model gets transformers' numbers
/// within the encoding's error, and a file that does not match or is damaged is refused.
final class ReferenceFileTests: XCTestCase {

    var dir: URL!
    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private let text = ReferenceText(source: "ids", sha256: String(repeating: "ab", count: 32))

    private func save(_ model: ErnieModel, _ ids: [Int32], context: Int, budget: Int = 1 << 20,
                      name: String = "ref.mpkref", text: ReferenceText? = nil) throws -> String {
        let path = dir.appendingPathComponent(name).path
        _ = try Evaluator.saveReference(model: model, modelSource: "fixture", tokens: ids, context: context,
                                        text: text ?? self.text, to: path, memoryBudget: budget)
        return path
    }

    /// Against transformers' numbers (tools/make_eval_fixture.py) for every windowing: perplexity
    /// and top-1 as exact as the in-memory comparison, mean KL within 1e-4 absolute.
    func testScoresMatchTransformersWithinTheEncodingError() throws {
        let expected = try EvalFixture.load()
        let model = try Fixtures.model(expected.model)
        let reference = try Fixtures.model(expected.reference)
        for e in expected.results {
            // A small budget makes several passes over the layers.
            let path = try save(reference, expected.ids, context: e.context, budget: 4096 * 4)
            let report = try Evaluator.evaluate(model: model, tokens: expected.ids, context: e.context,
                                                reference: ReferenceFileReader(path: path), text: text, memoryBudget: 4096 * 4,
                                                anyModel: true)
            XCTAssertEqual(report.windows, e.windows)
            XCTAssertEqual(report.predictedTokens, e.predicted_tokens)
            XCTAssertEqual(report.perplexity, e.perplexity, accuracy: e.perplexity * 1e-4)
            let c = try XCTUnwrap(report.reference)
            XCTAssertEqual(c.referencePerplexity, e.reference_perplexity, accuracy: e.reference_perplexity * 1e-4)
            XCTAssertEqual(c.top1Agreement, e.top1_agreement, accuracy: 1e-12)
            XCTAssertEqual(c.meanKLDivergence, e.mean_kl, accuracy: 1e-4, "context \(e.context)")
            try FileManager.default.removeItem(atPath: path)
        }
    }

    /// The reference pass's own perplexity and the layer-by-layer perplexity equal `forward`'s.
    func testLayerByLayerPerplexityEqualsThePerWindowPath() throws {
        let model = try Fixtures.model("moe_shared2_bias")
        let ids = try Fixtures.sequences("moe_shared2_bias").flatMap { $0 }
        let direct = try Evaluator.evaluate(model: model, tokens: ids, context: 7)
        for budget in [1, 1 << 30] {
            let layered = try Evaluator.evaluate(model: model, tokens: ids, context: 7, memoryBudget: budget)
            XCTAssertEqual(layered.predictedTokens, direct.predictedTokens)
            XCTAssertEqual(layered.totalNLL, direct.totalNLL, accuracy: abs(direct.totalNLL) * 1e-6)
        }
        let path = dir.appendingPathComponent("self.mpkref").path
        let saved = try Evaluator.saveReference(model: model, modelSource: "m", tokens: ids, context: 7, text: text,
                                                to: path, memoryBudget: 1 << 20)
        XCTAssertEqual(saved.totalNLL, direct.totalNLL, accuracy: abs(direct.totalNLL) * 1e-6)
        // Against its own reference a model has top-1 1 and a KL of zero up to the encoding.
        let selfReport = try Evaluator.evaluate(model: model, tokens: ids, context: 7, reference: ReferenceFileReader(path: path),
                                                text: text, memoryBudget: 1 << 20)
        XCTAssertEqual(selfReport.reference?.top1Agreement, 1)
        XCTAssertEqual(selfReport.reference?.meanKLDivergence ?? 1, 0, accuracy: 1e-5)
    }

    func testAReferenceForAnotherModelTextOrWindowingIsRefused() throws {
        let model = try Fixtures.model("moe_basic")
        let ids = try Fixtures.sequences("moe_basic").flatMap { $0 }
        let path = try save(model, ids, context: 8)
        func message(_ model: ErnieModel, _ tokens: [Int32], context: Int = 8, text: ReferenceText? = nil) -> String {
            do {
                _ = try Evaluator.evaluate(model: model, tokens: tokens, context: context, reference: ReferenceFileReader(path: path),
                                           text: text ?? self.text, memoryBudget: 1 << 20)
                return ""
            } catch { return "\(error)" }
        }
        XCTAssertEqual(message(model, ids), "")
        let other = try Fixtures.model("moe_sharded")  // moe_basic's shape, another seed
        XCTAssertEqual(other.config.vocabSize, model.config.vocabSize)
        XCTAssertTrue(message(other, ids).contains("was made from a different model"), message(other, ids))
        XCTAssertTrue(message(try Fixtures.model("dense"), ids).contains("vocabulary"))
        let otherText = ReferenceText(source: "other.txt", sha256: String(repeating: "cd", count: 32))
        XCTAssertTrue(message(model, ids, text: otherText).contains("different text"))
        var changed = ids
        changed[3] = (changed[3] + 1) % Int32(model.config.vocabSize)
        XCTAssertTrue(message(model, changed).contains("other token ids"))
        XCTAssertTrue(message(model, ids, context: 9).contains("--context 8"))
    }

    /// Every truncation and many corruptions of a reference file give a clear error, never a
    /// crash or a silently different score.
    func testTruncatedOrCorruptedFilesAreClearErrors() throws {
        let model = try Fixtures.model("moe_basic")
        let ids = try Fixtures.sequences("moe_basic").flatMap { $0 }
        let path = try save(model, ids, context: 8)
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        let damaged = dir.appendingPathComponent("damaged.mpkref")
        func score(_ bytes: Data) -> String {
            do {
                try bytes.write(to: damaged)
                _ = try Evaluator.evaluate(model: model, tokens: ids, context: 8, reference: ReferenceFileReader(path: damaged.path),
                                           text: text, memoryBudget: 1 << 20)
                return ""
            } catch { return "\(error)" }
        }
        XCTAssertEqual(score(good), "")
        for length in Set([0, 5, 8, 15, 16, 40] + stride(from: 100, to: good.count, by: max(1, good.count / 37)).map { $0 } + [good.count - 1]) {
            let m = score(good.prefix(length))
            XCTAssertFalse(m.isEmpty, "truncated to \(length) bytes was accepted")
            XCTAssertLessThan(m.count, 300, m)
        }
        XCTAssertTrue(score(good + Data([0])).contains("after its last window"))
        var rng = SplitMix64(state: 7)
        for _ in 0..<60 {
            var bytes = good
            let at = Int(rng.next() % UInt64(good.count))
            bytes[at] ^= UInt8(1 << (rng.next() % 8))
            let m = score(bytes)
            XCTAssertFalse(m.isEmpty, "a flipped bit at byte \(at) was accepted")
            XCTAssertLessThan(m.count, 300, m)
        }
        XCTAssertTrue(score(Data("not a reference".utf8)).contains("not a moepack reference file"))
    }
}
