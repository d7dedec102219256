import XCTest
import MoEFormat
import MoERuntime
import MoETestSupport
@testable import MoEConvert

final class PruningSweepTests: XCTestCase {
    /// Evaluating several models in one pass gives each model's own report.
    func testSeveralModelsMatchOneByOne() throws {
        let weights = try Fixtures.weights("moe_basic")
        let reference = try ErnieModel(weights: weights)
        var plan = PruningPlan.full(weights.config)
        plan.kept[1] = [0, 2, 3, 5, 7]
        let pruned = try ErnieModel(weights: PrunedWeights(base: weights, plan: plan))
        let tokens = try Fixtures.sequences("moe_basic").flatMap { $0 }
        let both = try Evaluator.evaluate(models: [reference, pruned], tokens: tokens, context: 8, reference: reference)
        XCTAssertEqual(both[0], try Evaluator.evaluate(model: reference, tokens: tokens, context: 8, reference: reference))
        XCTAssertEqual(both[1], try Evaluator.evaluate(model: pruned, tokens: tokens, context: 8, reference: reference))
        XCTAssertEqual(both[0].reference?.meanKLDivergence ?? -1, 0, accuracy: 1e-9)
        XCTAssertGreaterThan(both[1].reference?.meanKLDivergence ?? 0, 0)
    }

    func testSweepRejectsStatsOfAnotherModel() throws {
        let stats = try Fixtures.calibrate("moe_sharded")
        XCTAssertThrowsError(try PruningSweep.run(weights: Fixtures.weights("moe_basic"), stats: stats, tokens: [1, 2, 3],
                                                  context: 8, criteria: [.reap], ratios: [0.25])) {
            XCTAssertTrue("\($0)".contains("measured on a different model"), "\($0)")
        }
    }
}
