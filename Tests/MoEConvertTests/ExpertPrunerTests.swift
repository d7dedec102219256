import XCTest
import MoEFormat
@testable import MoEConvert

final class ExpertPrunerTests: XCTestCase {
    /// Stats for 2 layers of 8 experts with k = 2; each layer's counts, weights and norms given.
    private func stats(_ layers: [(count: [Int], weight: [Double], norm: [Double])], k: Int = 2) -> CalibrationStats {
        CalibrationStats(
            model: .init(identity: "x", identityScheme: ModelIdentity.scheme, architecture: "Ernie4_5_MoeForCausalLM",
                         numExperts: layers[0].count.count, moeK: k, moeLayers: Array(1...layers.count)),
            data: .init(source: "t", tokens: 100, windows: 1, context: 100),
            layers: layers.enumerated().map { i, l in
                .init(layer: i + 1, count: l.count, weightSum: l.weight,
                      weightMean: zip(l.weight, l.count).map { $1 > 0 ? $0 / Double($1) : 0 },
                      outputNormMean: l.norm, probabilitySum: l.weight, routerEntropy: 1, selectionEntropy: 1)
            })
    }

    private let twoLayers: [(count: [Int], weight: [Double], norm: [Double])] = [
        ([50, 0, 30, 10, 40, 5, 45, 20], [30, 0, 10, 9, 20, 4, 25, 2], [1, 0, 2, 9, 1, 8, 1, 1]),
        ([25, 25, 25, 25, 25, 25, 25, 25], [12, 13, 14, 15, 16, 17, 18, 19], [1, 1, 1, 1, 1, 1, 1, 1]),
    ]

    func testPerLayerRatioRemovesLowestScoresInEveryLayer() throws {
        let s = stats(twoLayers)
        let frequency = try ExpertPruner.plan(stats: s, criterion: .frequency, budget: .perLayer(ratio: 0.25))
        XCTAssertEqual(frequency.kept[1], [0, 2, 3, 4, 6, 7])
        // All counts tie in layer 2: the highest ids go first.
        XCTAssertEqual(frequency.kept[2], [0, 1, 2, 3, 4, 5])
        let weight = try ExpertPruner.plan(stats: s, criterion: .weight, budget: .perLayer(ratio: 0.25))
        XCTAssertEqual(weight.kept[1], [0, 2, 3, 4, 5, 6])
        XCTAssertEqual(weight.kept[2], [2, 3, 4, 5, 6, 7])
        let reap = try ExpertPruner.plan(stats: s, criterion: .reap, budget: .perLayer(ratio: 0.25))
        // Norm ties at 1 among 0, 4, 6, 7 (and 1 is 0): remove 1, then 7.
        XCTAssertEqual(reap.kept[1], [0, 2, 3, 4, 5, 6])
        XCTAssertEqual(weight.removedCount, 4)
        XCTAssertEqual(try ExpertPruner.plan(stats: s, criterion: .reap, budget: .perLayer(ratio: 0)).keptCount, 16)
    }

    func testGlobalRatioFollowsScoresAcrossLayers() throws {
        // Layer 2 is uniform, layer 1 skewed: removing 4 of 16 by frequency share takes the four
        // smallest shares, all in layer 1 (0, 5, 10, 20 of 200 vs 25 of 200 in layer 2).
        let plan = try ExpertPruner.plan(stats: stats(twoLayers), criterion: .frequency, budget: .global(ratio: 0.25))
        XCTAssertEqual(plan.kept[1], [0, 2, 4, 6])
        XCTAssertEqual(plan.kept[2], Array(0..<8))
        // Never below k in a layer: at 0.7 (11 of 16), after the 4 smallest shares of layer 1
        // come the 8 equal shares of layer 2, of which only 6 can go; the 11th is layer 1's
        // next smallest (expert 2).
        let deep = try ExpertPruner.plan(stats: stats(twoLayers), criterion: .frequency, budget: .global(ratio: 0.7))
        XCTAssertEqual(deep.kept[1], [0, 4, 6])
        XCTAssertEqual(deep.kept[2], [0, 1])
        XCTAssertEqual(deep.removedCount, 11)
    }

    func testRatiosThatLeaveFewerThanKAreErrors() {
        let s = stats(twoLayers)
        XCTAssertNoThrow(try ExpertPruner.plan(stats: s, criterion: .frequency, budget: .perLayer(ratio: 0.8)))
        XCTAssertThrowsError(try ExpertPruner.plan(stats: s, criterion: .frequency, budget: .perLayer(ratio: 0.9))) {
            XCTAssertEqual("\($0)", "prune ratio 0.9 would leave 1 of 8 experts per layer, fewer than moe_k = 2")
        }
        XCTAssertThrowsError(try ExpertPruner.plan(stats: stats(twoLayers, k: 3), criterion: .frequency, budget: .perLayer(ratio: 0.75))) {
            XCTAssertTrue("\($0)".contains("fewer than moe_k = 3"), "\($0)")
        }
        XCTAssertThrowsError(try ExpertPruner.plan(stats: s, criterion: .frequency, budget: .global(ratio: 0.8))) {
            XCTAssertTrue("\($0)".contains("allows at most 12"), "\($0)")
        }
        for bad in [-0.1, 1, .nan] {
            XCTAssertThrowsError(try ExpertPruner.plan(stats: s, criterion: .frequency, budget: .perLayer(ratio: bad)))
        }
    }

    func testCoverage() throws {
        let s = stats(twoLayers)
        let plan = try ExpertPruner.plan(stats: s, criterion: .frequency, budget: .perLayer(ratio: 0.25))
        let coverage = ExpertPruner.coverage(stats: s, plan: plan, criterion: .frequency)
        XCTAssertEqual(coverage.perLayer[1]!, 195.0 / 200, accuracy: 1e-12)
        XCTAssertEqual(coverage.perLayer[2]!, 0.75, accuracy: 1e-12)
        XCTAssertEqual(coverage.overall, (195.0 + 150) / 400, accuracy: 1e-12)
    }
}
