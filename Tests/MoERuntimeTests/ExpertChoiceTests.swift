import XCTest
@testable import MoERuntime

/// The router's top-k choice: largest scores first, equal scores in expert order (what a stable
/// descending sort gives, and how transformers' topk resolves the ties these tests use).
final class ExpertChoiceTests: XCTestCase {
    func testLargestFirstWithTiesInIndexOrder() {
        let scores: [Float] = [0.1, 0.5, 0.5, 0.2, 0.5, -1, 0.3]
        XCTAssertEqual(Ops.topIndices(scores, count: 1), [1])
        XCTAssertEqual(Ops.topIndices(scores, count: 2), [1, 2])
        XCTAssertEqual(Ops.topIndices(scores, count: 4), [1, 2, 4, 6])
        XCTAssertEqual(Ops.topIndices(scores, count: 7), [1, 2, 4, 6, 3, 0, 5])
        XCTAssertEqual(Ops.topIndices(scores, count: 9), [1, 2, 4, 6, 3, 0, 5])
        XCTAssertEqual(Ops.topIndices([], count: 3), [])
    }

    func testAgreesWithAStableSortOnRandomScores() {
        var rng = TestRandom(seed: 5)
        for _ in 0..<200 {
            // Few distinct values, so ties are common.
            let scores = (0..<32).map { _ in Float(Int(rng.next() * 5)) / 4 }
            let sorted = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
            for k in [1, 4, 8] { XCTAssertEqual(Ops.topIndices(scores, count: k), Array(sorted.prefix(k))) }
        }
    }
}
