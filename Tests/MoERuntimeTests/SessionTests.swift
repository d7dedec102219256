import MoETestSupport
import XCTest
@testable import MoERuntime

final class SessionTests: XCTestCase {
    /// Greedy tokens by recomputing the whole sequence at every step (no cache, no session).
    private func referenceGreedy(_ model: ErnieModel, prompt: [Int32], count: Int) throws -> [Int32] {
        var sequence = prompt
        for _ in 0..<count {
            let logits = try model.logits(sequence)
            let last = Array(logits[((sequence.count - 1) * model.config.vocabSize)...])
            sequence.append(Sampler.argmax(last))
        }
        return Array(sequence[prompt.count...])
    }

    private func collect(_ session: Session, _ prompt: [Int32], _ options: GenerationOptions) throws
        -> (ids: [Int32], text: String, summary: GenerationSummary) {
        var ids: [Int32] = [], text = ""
        let summary = try session.generate(tokens: prompt, options: options) { event in
            if case .token(let id, let chunk) = event {
                ids.append(id)
                text += chunk
            }
        }
        return (ids, text, summary)
    }

    func testGreedyGenerationEqualsFullRecompute() throws {
        let model = try Fixtures.model("moe_basic")
        let lm = LanguageModel(model: model, tokenizer: WordTokenizer(), stopTokenIDs: [])
        let prompt: [Int32] = [1, 104, 69, 86, 10]
        let expected = try referenceGreedy(model, prompt: prompt, count: 12)
        let result = try collect(lm.makeSession(), prompt, GenerationOptions(maxTokens: 12))
        XCTAssertEqual(result.ids, expected)
        XCTAssertEqual(result.summary.finishReason, .maxTokens)
        XCTAssertEqual(result.summary.generatedTokens, 12)
        XCTAssertEqual(result.summary.promptTokens, 5)
    }

    func testStopTokenEndsGeneration() throws {
        let model = try Fixtures.model("moe_basic")
        let prompt: [Int32] = [1, 104, 69, 86, 10]
        let free = try referenceGreedy(model, prompt: prompt, count: 8)
        let stopID = free[3]
        let firstStop = try XCTUnwrap(free.firstIndex(of: stopID))
        let lm = LanguageModel(model: model, tokenizer: WordTokenizer(), stopTokenIDs: [stopID])
        let result = try collect(lm.makeSession(), prompt, GenerationOptions(maxTokens: 8))
        XCTAssertEqual(result.ids, Array(free[...firstStop]))
        XCTAssertEqual(result.summary.finishReason, .endOfSequence)
    }

    func testStopStringEndsGenerationAndIsNotShown() throws {
        let model = try Fixtures.model("dense")
        let lm = LanguageModel(model: model, tokenizer: WordTokenizer(), stopTokenIDs: [])
        let prompt: [Int32] = [1, 20, 30]
        let free = try collect(lm.makeSession(), prompt, GenerationOptions(maxTokens: 10))
        // Stop on the text of the fourth generated token (ids >= 2 and < 100 decode to " w<id>").
        let words = free.ids.filter { (2..<100).contains($0) }
        try XCTSkipIf(words.count < 4, "fixture generates too few word tokens")
        let stop = " w\(words[3])"
        let cut = try XCTUnwrap(free.text.range(of: stop))
        let stopped = try collect(lm.makeSession(), prompt, GenerationOptions(maxTokens: 10, stopStrings: [stop]))
        XCTAssertEqual(stopped.summary.finishReason, .stopString)
        XCTAssertEqual(stopped.text, String(free.text[..<cut.lowerBound]))
    }

    func testContextLimit() throws {
        let model = try Fixtures.model("dense")
        let lm = LanguageModel(model: model, tokenizer: WordTokenizer(), stopTokenIDs: [])
        let session = lm.makeSession(contextLength: 8)
        let full = try collect(session, [1, 2, 3, 4, 5], GenerationOptions(maxTokens: 100))
        XCTAssertEqual(full.ids.count, 4)  // 5 prompt + 3 fed back + the last one sampled
        XCTAssertEqual(full.summary.finishReason, .contextFull)
        XCTAssertThrowsError(try collect(session, Array(repeating: 7, count: 8), GenerationOptions())) { error in
            XCTAssertTrue("\(error)".contains("the context holds 8"), "\(error)")
        }
        XCTAssertThrowsError(try collect(session, [], GenerationOptions()))
        XCTAssertThrowsError(try collect(session, [1, 500], GenerationOptions())) { error in
            XCTAssertTrue("\(error)".contains("outside the vocabulary"), "\(error)")
        }
    }

    func testFollowUpRequestReusesTheCacheAndMatchesAFreshSession() throws {
        let model = try Fixtures.model("moe_sharded")
        let lm = LanguageModel(model: model, tokenizer: WordTokenizer(), stopTokenIDs: [])
        let session = lm.makeSession()
        let first = try collect(session, [1, 20, 40, 29], GenerationOptions(maxTokens: 6))
        let followUp = [1, 20, 40, 29] + first.ids + [50, 60]
        let second = try collect(session, followUp, GenerationOptions(maxTokens: 6))
        XCTAssertEqual(second.summary.reusedPromptTokens, 4 + 5)  // the last generated token never went through the cache
        let fresh = try collect(lm.makeSession(), followUp, GenerationOptions(maxTokens: 6))
        XCTAssertEqual(second.ids, fresh.ids)
        let repeated = try collect(session, followUp, GenerationOptions(maxTokens: 6))
        XCTAssertEqual(repeated.ids, fresh.ids)
        XCTAssertEqual(repeated.summary.reusedPromptTokens, followUp.count - 1)
    }

    func testSeededSamplingIsReproducible() throws {
        let lm = LanguageModel(model: try Fixtures.model("moe_basic"), tokenizer: WordTokenizer(), stopTokenIDs: [])
        let options = GenerationOptions(maxTokens: 16, sampling: SamplingOptions(temperature: 1.2, topK: 50, topP: 0.95, seed: 5))
        let a = try collect(lm.makeSession(), [1, 9, 112], options)
        let b = try collect(lm.makeSession(), [1, 9, 112], options)
        XCTAssertEqual(a.ids, b.ids)
        var other = options
        other.sampling.seed = 6
        XCTAssertNotEqual(try collect(lm.makeSession(), [1, 9, 112], other).ids, a.ids)
    }

    func testStreamDeliversTokensThenSummary() async throws {
        let lm = LanguageModel(model: try Fixtures.model("moe_basic"), tokenizer: WordTokenizer(), stopTokenIDs: [])
        var ids: [Int32] = []
        var summary: GenerationSummary?
        for try await event in lm.makeSession().generate(prompt: "w5 w6 w7", options: GenerationOptions(maxTokens: 5)) {
            switch event {
            case .token(let id, _): ids.append(id)
            case .finished(let s): summary = s
            }
        }
        XCTAssertEqual(ids.count, 5)
        XCTAssertEqual(summary?.promptTokens, 4)  // bos + 3 words
        XCTAssertEqual(ids, try referenceGreedy(lm.model, prompt: [1, 5, 6, 7], count: 5))
    }

    func testCancellationStopsBeforeTheNextToken() throws {
        let lm = LanguageModel(model: try Fixtures.model("dense"), tokenizer: WordTokenizer(), stopTokenIDs: [])
        let session = lm.makeSession()
        var count = 0
        XCTAssertThrowsError(try session.generate(tokens: [1, 2, 3], options: GenerationOptions(maxTokens: 50),
                                                  isCancelled: { count >= 3 }) { event in
            if case .token = event { count += 1 }
        }) { XCTAssertTrue($0 is CancellationError, "\($0)") }
        XCTAssertEqual(count, 3)
        // The session stays usable and starts over cleanly.
        let again = try collect(session, [1, 2, 3], GenerationOptions(maxTokens: 4))
        XCTAssertEqual(again.summary.reusedPromptTokens, 0)
        XCTAssertEqual(again.ids, try referenceGreedy(lm.model, prompt: [1, 2, 3], count: 4))
    }

    func testCancellingTheConsumingTaskEndsTheStream() async throws {
        let lm = LanguageModel(model: try Fixtures.model("moe_shared2_bias"), tokenizer: WordTokenizer(), stopTokenIDs: [])
        let session = lm.makeSession()
        let maxTokens = 2000
        let consumer = Task { () -> Int in
            var count = 0
            for try await event in session.generate(tokens: [1, 2, 3], options: GenerationOptions(maxTokens: maxTokens)) {
                if case .token = event { count += 1 }
                if count == 1 { withUnsafeCurrentTask { $0?.cancel() } }
            }
            return count
        }
        let count = try await consumer.value
        XCTAssertLessThan(count, maxTokens)
        // The producer notices the cancellation before its next token and frees the session.
        var freed = false
        for _ in 0..<500 where !freed {
            if (try? collect(session, [1, 2], GenerationOptions(maxTokens: 1))) != nil { freed = true }
            else { try await Task.sleep(nanoseconds: 10_000_000) }
        }
        XCTAssertTrue(freed)
    }
}
