import Foundation
import MoETestSupport
import XCTest
@testable import MoERuntime

/// Perplexity, KL divergence and top-1 agreement against numbers computed with transformers
/// (tools/make_eval_fixture.py).
final class EvaluatorTests: XCTestCase {

    func testMatchesTransformersOnEveryWindowing() throws {
        let expected = try EvalFixture.load()
        let model = try Fixtures.model(expected.model)
        let reference = try Fixtures.model(expected.reference)
        for e in expected.results {
            var progress: [Int] = []
            let report = try Evaluator.evaluate(model: model, tokens: expected.ids, context: e.context,
                                                reference: reference) { done, total in
                XCTAssertEqual(total, e.windows)
                progress.append(done)
            }
            XCTAssertEqual(progress, Array(0...e.windows))
            XCTAssertEqual(report.windows, e.windows)
            XCTAssertEqual(report.predictedTokens, e.predicted_tokens)
            XCTAssertEqual(report.totalNLL, e.total_nll, accuracy: e.total_nll * 1e-5)
            XCTAssertEqual(report.perplexity, e.perplexity, accuracy: e.perplexity * 1e-4)
            let comparison = try XCTUnwrap(report.reference)
            XCTAssertEqual(comparison.referencePerplexity, e.reference_perplexity, accuracy: e.reference_perplexity * 1e-4)
            XCTAssertEqual(comparison.meanKLDivergence, e.mean_kl, accuracy: e.mean_kl * 1e-4)
            XCTAssertEqual(comparison.top1Agreement, e.top1_agreement, accuracy: 1e-12)
        }
    }

    func testAModelAgainstItselfHasNoDivergence() throws {
        let model = try Fixtures.model("dense")
        let ids = try Fixtures.sequences("dense")[2]
        let report = try Evaluator.evaluate(model: model, tokens: ids, context: 16, reference: model)
        XCTAssertEqual(report.reference?.meanKLDivergence ?? -1, 0, accuracy: 1e-12)
        XCTAssertEqual(report.reference?.top1Agreement, 1)
        XCTAssertEqual(report.reference?.referencePerplexity ?? 0, report.perplexity, accuracy: 1e-9)
    }

    func testBadInputIsAClearError() throws {
        let model = try Fixtures.model("moe_shared2_bias")  // 2048 positions, vocabulary 112
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "" } catch { return "\(error)" }
        }
        XCTAssertTrue(message { _ = try Evaluator.evaluate(model: model, tokens: [1, 2, 3], context: 4096) }
            .contains("larger than the model's limit of 2048"))
        XCTAssertTrue(message { _ = try Evaluator.evaluate(model: model, tokens: [1], context: 16) }
            .contains("at least 2"))
        XCTAssertTrue(message { _ = try Evaluator.evaluate(model: model, tokens: [1, 2], context: 1) }
            .contains("at least 2 tokens"))
        XCTAssertTrue(message {
            _ = try Evaluator.evaluate(model: model, tokens: [1, 2, 3], context: 16, reference: try Fixtures.model("dense"))
        }.contains("vocabulary"))
    }
}
