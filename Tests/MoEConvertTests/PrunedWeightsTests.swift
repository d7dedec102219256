import XCTest
import MoEFormat
import MoERuntime
@testable import MoEConvert

final class PrunedWeightsTests: XCTestCase {
    private func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    /// Calibrating and evaluating on the same text with a ratio that removes only experts that
    /// were never selected must not change the logits.
    func testPruningNeverSelectedExpertsKeepsLogits() throws {
        for name in ["moe_basic", "moe_shared2_bias", "moe_noshared_interval2"] {
            let weights = try Fixtures.weights(name)
            let stats = try Fixtures.calibrate(name)
            let unused = stats.layers.map { $0.count.filter { $0 == 0 }.count }
            let removable = unused.min()!
            XCTAssertGreaterThan(removable, 0, "\(name): every expert was used; the test needs unused ones")
            let ratio = Double(removable) / Double(stats.model.numExperts)
            let plan = try ExpertPruner.plan(stats: stats, criterion: .frequency, budget: .perLayer(ratio: ratio))
            for layer in stats.layers {
                let removed = Set(0..<stats.model.numExperts).subtracting(plan.kept[layer.layer]!)
                XCTAssertEqual(removed.count, removable)
                XCTAssertTrue(removed.allSatisfy { layer.count[$0] == 0 }, "\(name) layer \(layer.layer)")
            }
            let pruned = try PrunedWeights(base: weights, plan: plan)
            let full = try ErnieModel(weights: weights)
            let small = try ErnieModel(weights: pruned)
            for sequence in try Fixtures.sequences(name) {
                let expected = try full.logits(sequence)
                let actual = try small.logits(sequence)
                XCTAssertLessThanOrEqual(maxDifference(expected, actual), 1e-5, "\(name), \(sequence.count) tokens")
            }
            // The pruned model routes the same tokens to the same (original) experts.
            let again = try Calibrator.run(model: small, weights: pruned, windows: Fixtures.sequences(name), source: "golden sequences")
            XCTAssertEqual(again.layers.map(\.count), stats.layers.map(\.count), name)
        }
    }

    func testPrunedExpertsAndRouterRowsAreGone() throws {
        let weights = try Fixtures.weights("moe_basic")
        var plan = PruningPlan.full(weights.config)
        plan.kept[1] = [0, 2, 5, 7]
        let pruned = try PrunedWeights(base: weights, plan: plan)
        XCTAssertEqual(pruned.keptExperts(layer: 1), [0, 2, 5, 7])
        XCTAssertEqual(pruned.keptExperts(layer: 2), Array(0..<8))
        XCTAssertThrowsError(try pruned.matrix("model.layers.1.mlp.experts.3.up_proj.weight", rows: 24, cols: 48)) {
            XCTAssertTrue("\($0)".contains("pruned expert 3 of layer 1"))
        }
        XCTAssertNoThrow(try pruned.matrix("model.layers.1.mlp.experts.5.up_proj.weight", rows: 24, cols: 48))
        let router = try pruned.matrix("model.layers.1.mlp.gate.weight", rows: 4, cols: 48) as! DenseMatrix
        let fullRouter = try weights.checkpoint.floats("model.layers.1.mlp.gate.weight")
        for (row, id) in [0, 2, 5, 7].enumerated() {
            XCTAssertEqual(Array(router.values[(row * 48)..<((row + 1) * 48)]), Array(fullRouter[(id * 48)..<((id + 1) * 48)]))
        }
        let bias = try pruned.vector("model.layers.1.mlp.moe_statics.e_score_correction_bias", count: 4)
        let fullBias = try weights.checkpoint.floats("model.layers.1.mlp.moe_statics.e_score_correction_bias")
        XCTAssertEqual(bias, [0, 2, 5, 7].map { fullBias[$0] })
    }

    func testInvalidPlansAreRejected() throws {
        let weights = try Fixtures.weights("moe_basic")
        var plan = PruningPlan.full(weights.config)
        plan.kept[1] = [3]
        XCTAssertThrowsError(try PrunedWeights(base: weights, plan: plan)) {
            XCTAssertTrue("\($0)".contains("at least moe_k = 2"), "\($0)")
        }
        plan.kept[1] = [3, 9]
        XCTAssertThrowsError(try PrunedWeights(base: weights, plan: plan))
        plan.kept = [1: [0, 1]]
        XCTAssertThrowsError(try PrunedWeights(base: weights, plan: plan))
    }
}
