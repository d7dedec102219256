import Foundation
import XCTest
import MoEFormat
import MoERuntime
import MoETestSupport
@testable import MoEConvert

/// The built-in tiny model: its router has a trained (non-zero) correction bias, so masking
/// pruned experts has to be exact for these to hold.
final class TinyModelPruningTests: XCTestCase {
    static let directory = Fixtures.tinyModel

    private func reference() throws -> (ids: [Int32], experts: [Int: [[Int]]]) {
        let data = try Data(contentsOf: Fixtures.root.appendingPathComponent("tiny-moe/reference.json"))
        let object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let ids = (object["ids"] as! [Int]).map(Int32.init)
        let routing = (object["routing_heldout"] as! [String: Any])["experts"] as! [String: [[Int]]]
        return (ids, Dictionary(uniqueKeysWithValues: routing.map { (Int($0.key)!, $0.value) }))
    }

    func testCountsMatchTransformersRouting() throws {
        let (ids, experts) = try reference()
        let weights = try CheckpointWeights(checkpoint: Checkpoint(directory: Self.directory))
        let stats = try Calibrator.run(model: ErnieModel(weights: weights), weights: weights, windows: [ids], source: "t")
        for layer in stats.layers {
            var expected = [Int](repeating: 0, count: 16)
            for token in experts[layer.layer]! { for e in token { expected[e] += 1 } }
            XCTAssertEqual(layer.count, expected, "layer \(layer.layer)")
        }
    }

    func testPruningNeverSelectedExpertsKeepsLogitsExactly() throws {
        // 16 tokens leave 2 experts per layer unchosen, so ratio 0.125 removes only those.
        let ids = Array(try reference().ids.prefix(16))
        let weights = try CheckpointWeights(checkpoint: Checkpoint(directory: Self.directory))
        let full = try ErnieModel(weights: weights)
        let stats = try Calibrator.run(model: full, weights: weights, windows: [ids], source: "t")
        XCTAssertEqual(stats.layers.map { $0.count.filter { $0 == 0 }.count }, [2, 2, 2])
        let plan = try ExpertPruner.plan(stats: stats, criterion: .frequency, budget: .perLayer(ratio: 0.125))
        XCTAssertEqual(plan.removedCount, 6)
        for layer in stats.layers {
            XCTAssertTrue(Set(0..<16).subtracting(plan.kept[layer.layer]!).allSatisfy { layer.count[$0] == 0 })
        }
        let pruned = try ErnieModel(weights: PrunedWeights(base: weights, plan: plan))
        XCTAssertEqual(try pruned.logits(ids), try full.logits(ids))
        // Removing one expert that was chosen does change them.
        var used = plan
        let busiest = stats.layers[0].count.indices.max { stats.layers[0].count[$0] < stats.layers[0].count[$1] }!
        used.kept[stats.layers[0].layer] = (0..<16).filter { $0 != busiest }
        XCTAssertNotEqual(try ErnieModel(weights: PrunedWeights(base: weights, plan: used)).logits(ids), try full.logits(ids))
    }
}
