import Foundation
import MoEFormat
import MoERuntime
import MoETestSupport
import XCTest

/// The batched decode step against one-sequence-at-a-time forward passes.
final class BatchedDecodeTests: XCTestCase {
    /// Sequences at different positions step together; rows leave the batch as their sequence
    /// ends. Every row must equal the logits of the same token run through `forward` alone.
    func testBatchedRowsEqualPerSequenceForward() throws {
        for name in MoETestSupport.Fixtures.checkpointNames {
            let model = try ModelLoader.model(at: MoETestSupport.Fixtures.checkpoint(name).path)
            let long = try MoETestSupport.Fixtures.sequences(name).max { $0.count < $1.count }!
            // Four sequences with different prompt lengths and continuations.
            let prompts: [[Int32]] = [Array(long.prefix(1)), Array(long.prefix(5)), Array(long.dropFirst(3).prefix(9)),
                                      Array(long.prefix(2))]
            let continuations: [[Int32]] = [Array(long.dropFirst(1).prefix(12)), Array(long.dropFirst(5).prefix(3)),
                                            Array(long.dropFirst(12).prefix(7)), Array(long.dropFirst(2).prefix(10))]
            let batchCaches = prompts.map { _ in model.makeCache(capacity: 64) }
            let singleCaches = prompts.map { _ in model.makeCache(capacity: 64) }
            for (i, prompt) in prompts.enumerated() {
                _ = try model.forward(prompt, cache: batchCaches[i], lastOnly: true)
                _ = try model.forward(prompt, cache: singleCaches[i], lastOnly: true)
            }
            let vocab = model.config.vocabSize
            var step = 0
            var rowsChecked = 0
            while true {
                let active = continuations.indices.filter { step < continuations[$0].count }
                if active.isEmpty { break }
                let tokens = active.map { continuations[$0][step] }
                let logits = try model.decodeBatch(tokens: tokens, caches: active.map { batchCaches[$0] })
                XCTAssertEqual(logits.count, active.count * vocab)
                for (row, i) in active.enumerated() {
                    let reference = try model.forward([tokens[row]], cache: singleCaches[i], lastOnly: true)
                    let batched = Array(logits[(row * vocab)..<((row + 1) * vocab)])
                    XCTAssertLessThanOrEqual(relativeMaxError(batched, reference), 1e-5,
                                             "\(name) step \(step) sequence \(i)")
                    XCTAssertEqual(batchCaches[i].count, singleCaches[i].count)
                    rowsChecked += 1
                }
                step += 1
            }
            XCTAssertEqual(rowsChecked, continuations.map(\.count).reduce(0, +))
        }
    }

    /// A batch of one is exactly a single decode step, and it agrees with the golden logits.
    func testSingleRowMatchesGolden() throws {
        let name = "moe_basic"
        let model = try ModelLoader.model(at: MoETestSupport.Fixtures.checkpoint(name).path)
        let sequences = try MoETestSupport.Fixtures.sequences(name)
        let index = sequences.indices.max { sequences[$0].count < sequences[$1].count }!
        let sequence = sequences[index]
        let golden = try MoETestSupport.Fixtures.goldenLogits(name, index).values
        let vocab = model.config.vocabSize
        let cache = model.makeCache()
        _ = try model.forward([sequence[0]], cache: cache)
        for t in 1..<sequence.count {
            let logits = try model.decodeBatch(tokens: [sequence[t]], caches: [cache])
            XCTAssertLessThanOrEqual(relativeMaxError(logits, Array(golden[(t * vocab)..<((t + 1) * vocab)])), 1e-4,
                                     "position \(t)")
        }
    }

    func testRejectsBadBatches() throws {
        let model = try ModelLoader.model(at: MoETestSupport.Fixtures.checkpoint("moe_basic").path)
        let a = model.makeCache(capacity: 2), b = model.makeCache(capacity: 8)
        XCTAssertEqual(try model.decodeBatch(tokens: [], caches: []), [])
        XCTAssertThrowsError(try model.decodeBatch(tokens: [1, 2], caches: [a])) { error in
            XCTAssertEqual("\(error)", "decodeBatch: 2 tokens for 1 caches")
        }
        XCTAssertThrowsError(try model.decodeBatch(tokens: [1, 2], caches: [b, b])) { error in
            XCTAssertEqual("\(error)", "decodeBatch: the same cache appears twice in one batch")
        }
        XCTAssertThrowsError(try model.decodeBatch(tokens: [1, 500], caches: [a, b])) { error in
            XCTAssertEqual("\(error)", "token id 500 is outside the vocabulary (0..<128)")
        }
        _ = try model.decodeBatch(tokens: [1, 2], caches: [a, b])
        _ = try model.decodeBatch(tokens: [1, 2], caches: [a, b])
        XCTAssertThrowsError(try model.decodeBatch(tokens: [1, 2], caches: [a, b])) { error in
            XCTAssertEqual("\(error)", "context overflow: 3 tokens exceed the limit of 2")
        }
        // A rejected batch leaves every cache as it was.
        XCTAssertEqual(a.count, 2)
        XCTAssertEqual(b.count, 2)
    }
}
