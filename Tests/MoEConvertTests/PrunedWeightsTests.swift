import XCTest
import MoEFormat
import MoERuntime
import MoETestSupport
@testable import MoEConvert

final class PrunedWeightsTests: XCTestCase {
    /// Calibrating and evaluating on the same text with a ratio that removes only experts that
    /// were never selected must not change the logits.
    func testPruningNeverSelectedExpertsKeepsLogits() throws {
        // Short texts, so that some experts are never chosen.
        for (name, sequence) in [("moe_basic", 2), ("moe_shared2_bias", 1), ("moe_noshared_interval2", 1)] {
            let weights = try Fixtures.weights(name)
            let text = [try Fixtures.sequences(name)[sequence]]
            let stats = try Calibrator.run(model: ErnieModel(weights: weights), weights: weights, windows: text, source: "t")
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
            XCTAssertEqual(try full.logits(text[0]), try small.logits(text[0]), name)
            // The pruned model routes the same tokens to the same (original) experts.
            let again = try Calibrator.run(model: small, weights: pruned, windows: text, source: "t")
            XCTAssertEqual(again.layers.map(\.count), stats.layers.map(\.count), name)
        }
    }

    func testPrunedExpertsAreGoneAndTheRouterStaysWhole() throws {
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
        XCTAssertNoThrow(try pruned.matrix("model.layers.1.mlp.gate.weight", rows: 8, cols: 48))
    }

    /// With experts removed, each token's choice is the unpruned model's ranking restricted to
    /// the kept experts, and the weights are their unpruned softmax values renormalised.
    func testRoutingMasksPrunedExperts() throws {
        let name = "moe_shared2_bias"
        let weights = try Fixtures.weights(name)
        let k = weights.config.moeK
        var plan = PruningPlan.full(weights.config)
        plan.kept[1] = [1, 2, 4, 6, 7]
        final class Capture: RoutingObserver {
            var decisions: [Int: [RoutingDecision]] = [:]
            func observe(layer: Int, decisions: [RoutingDecision], weightedOutputNorms: [[Float]]) { self.decisions[layer] = decisions }
        }
        let sequence = try Fixtures.sequences(name)[2]
        let full = Capture(), small = Capture()
        _ = try ErnieModel(weights: weights).forward(sequence, cache: KVCache(config: weights.config), observer: full)
        _ = try ErnieModel(weights: PrunedWeights(base: weights, plan: plan)).forward(sequence, cache: KVCache(config: weights.config), observer: small)
        let bias = try weights.checkpoint.floats("model.layers.1.mlp.moe_statics.e_score_correction_bias")
        var changed = 0
        for (f, s) in zip(full.decisions[1]!, small.decisions[1]!) {
            // Layer 1 is the first MoE layer, so its input is unchanged by pruning.
            XCTAssertEqual(s.probabilities, plan.kept[1]!.map { f.probabilities[$0] })
            let expected = plan.kept[1]!.sorted { f.probabilities[$0] + bias[$0] > f.probabilities[$1] + bias[$1] }.prefix(k)
            XCTAssertEqual(s.experts.map { plan.kept[1]![$0] }, Array(expected))
            let raw = expected.map { f.probabilities[$0] }
            for (w, r) in zip(s.weights, raw) { XCTAssertEqual(w, r / raw.reduce(0, +), accuracy: 1e-6) }
            if Set(expected) != Set(f.experts) { changed += 1 }
        }
        XCTAssertGreaterThan(changed, 0, "the pruned experts should have been chosen for some tokens")
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
