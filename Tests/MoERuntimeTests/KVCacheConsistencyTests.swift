import MoETestSupport
import XCTest
@testable import MoERuntime

/// Logits computed token by token through the KV cache equal a full recompute of the sequence.
final class KVCacheConsistencyTests: XCTestCase {
    func testIncrementalLogitsMatchFullRecompute() throws {
        for name in Fixtures.checkpointNames {
            let model = try Fixtures.model(name)
            let vocab = model.config.vocabSize
            let sequence = try XCTUnwrap(try Fixtures.sequences(name).max { $0.count < $1.count })
            let full = try model.logits(sequence)
            for prefix in [1, 5] {
                let cache = model.makeCache()
                var step = try model.prefill(Array(sequence[..<prefix]), cache: cache)
                for position in (prefix - 1)..<sequence.count {
                    let expected = full[(position * vocab)..<((position + 1) * vocab)]
                    let error = relativeError(step[...], expected)
                    XCTAssertLessThanOrEqual(error, 1e-4, "\(name): prefill \(prefix), position \(position)")
                    if position + 1 < sequence.count {
                        step = try model.decodeStep(sequence[position + 1], cache: cache)
                    }
                }
                XCTAssertEqual(cache.count, sequence.count)
            }
        }
    }

    func testTruncatedCacheRecomputesTheSameLogits() throws {
        let model = try Fixtures.model("moe_basic")
        let sequence = try Fixtures.sequences("moe_basic")[2]
        let cache = model.makeCache()
        _ = try model.prefill(sequence, cache: cache)
        cache.truncate(to: 20)
        let again = try model.prefill(Array(sequence[20...]), cache: cache)
        let fresh = try model.prefill(sequence, cache: model.makeCache())
        XCTAssertLessThanOrEqual(relativeError(again[...], fresh[...]), 1e-4)
    }

    /// A cache that copied another's positions continues exactly as the original does (f32 and
    /// f16, into an empty cache and over one that held other positions), and mismatched caches
    /// are refused.
    func testCopiedPositionsContinueLikeTheOriginal() throws {
        let model = try Fixtures.model("moe_basic")
        let sequence = try Fixtures.sequences("moe_basic")[2]
        for precision in KVCache.Precision.allCases {
            let original = model.makeCache(precision: precision)
            _ = try model.prefill(Array(sequence[..<12]), cache: original)
            let used = model.makeCache(capacity: 64, precision: precision)
            _ = try model.prefill(Array(sequence[..<30].reversed()), cache: used)
            for copy in [model.makeCache(capacity: 64, precision: precision), used] {
                try copy.copyPositions(from: original)
                XCTAssertEqual(copy.count, 12)
                for token in sequence[12..<16] {
                    let mine = try model.decodeStep(token, cache: copy)
                    XCTAssertEqual(mine, try model.decodeStep(token, cache: original), "\(precision)")
                }
                original.truncate(to: 12)
            }
        }
        let f32 = model.makeCache(precision: .f32), f16 = model.makeCache(precision: .f16)
        _ = try model.prefill(Array(sequence[..<4]), cache: f32)
        XCTAssertThrowsError(try f16.copyPositions(from: f32))
        XCTAssertThrowsError(try model.makeCache(capacity: 3).copyPositions(from: f32))
        XCTAssertThrowsError(try Fixtures.model("dense").makeCache().copyPositions(from: f32))
    }

    func testContextOverflowIsAClearError() throws {
        let model = try Fixtures.model("dense")
        let cache = model.makeCache(capacity: 4)
        _ = try model.prefill([1, 2, 3, 4], cache: cache)
        XCTAssertThrowsError(try model.decodeStep(5, cache: cache)) { error in
            XCTAssertTrue("\(error)".contains("context overflow"), "\(error)")
        }
        XCTAssertThrowsError(try model.prefill([], cache: model.makeCache()))
    }
}
