import Foundation
import XCTest
@testable import MoERuntime

final class SamplerTests: XCTestCase {
    func testGeneratorsFollowThePublishedAlgorithms() {
        var splitMix = SplitMix64(state: 0)
        XCTAssertEqual(splitMix.next(), 0xE220_A839_7B1D_CDAF)
        XCTAssertEqual(splitMix.next(), 0x6E78_9E6A_A1B9_65F4)
        var random = SeededRandom(seed: 42)
        XCTAssertEqual((0..<4).map { _ in random.next() },
                       [0x1578_0B2E_0C2E_C716, 0x6104_D986_6D11_3A7E, 0xAE17_5332_39E4_99A1, 0xECB8_AD47_03B3_60A1])
    }

    func testTemperatureZeroAndTopKOneAreGreedy() {
        let logits: [Float] = [0.1, 2.5, -1, 2.5, 0.3]
        for options in [SamplingOptions(temperature: 0, seed: 7), SamplingOptions(temperature: 1.5, topK: 1, seed: 7)] {
            var sampler = Sampler(options: options)
            for _ in 0..<20 { XCTAssertEqual(sampler.sample(logits), 1) }  // first of the tied maxima
        }
    }

    func testTopKKeepsTheKMostLikelyWithRenormalisedProbabilities() {
        let sampler = Sampler(options: SamplingOptions(temperature: 1, topK: 3))
        let candidates = sampler.candidates([1, 5, 3, 4, 2])
        XCTAssertEqual(candidates.map(\.id), [1, 3, 2])
        let z = exp(5.0) + exp(4.0) + exp(3.0)
        for (c, expected) in zip(candidates, [exp(5.0) / z, exp(4.0) / z, exp(3.0) / z]) {
            XCTAssertEqual(c.probability, expected, accuracy: 1e-12)
        }
    }

    func testTopPKeepsTheSmallestSetReachingP() {
        let probabilities = [0.05, 0.5, 0.15, 0.3]
        let logits = probabilities.map { Float(log($0)) }
        func kept(_ p: Double) -> [Int32] { Sampler(options: SamplingOptions(temperature: 1, topP: p)).candidates(logits).map(\.id) }
        XCTAssertEqual(kept(0.4), [1])
        XCTAssertEqual(kept(0.7), [1, 3])
        XCTAssertEqual(kept(0.9), [1, 3, 2])
        XCTAssertEqual(kept(1), [0, 1, 2, 3])  // nothing truncated: every token, in id order
        let renormalised = Sampler(options: SamplingOptions(temperature: 1, topP: 0.7)).candidates(logits)
        XCTAssertEqual(renormalised[0].probability, 0.5 / 0.8, accuracy: 1e-6)
        XCTAssertEqual(renormalised[1].probability, 0.3 / 0.8, accuracy: 1e-6)
    }

    func testTopKThenTopP() {
        let logits = [0.4, 0.3, 0.2, 0.1].map { Float(log($0)) }
        // top-k 3 renormalises to 4/9, 3/9, 2/9; top-p 0.7 then needs the first two (7/9).
        let candidates = Sampler(options: SamplingOptions(temperature: 1, topK: 3, topP: 0.7)).candidates(logits)
        XCTAssertEqual(candidates.map(\.id), [0, 1])
    }

    func testTemperatureSharpensAndFlattens() {
        let logits: [Float] = [2, 1]
        let cold = Sampler(options: SamplingOptions(temperature: 0.5)).candidates(logits)
        let hot = Sampler(options: SamplingOptions(temperature: 2)).candidates(logits)
        XCTAssertEqual(cold[0].probability, 1 / (1 + exp(-2.0)), accuracy: 1e-12)
        XCTAssertEqual(hot[0].probability, 1 / (1 + exp(-0.5)), accuracy: 1e-12)
    }

    /// transformers' repetition_penalty: a positive logit of a token in the sequence (prompt or
    /// generated) is divided by the penalty, a negative one multiplied, once per token however
    /// often it occurs.
    func testRepetitionPenaltyScalesTheLogitsOfTokensInTheSequence() {
        let logits: [Float] = [2, -1, 0.5, 1.9, -3]
        var sampler = Sampler(options: SamplingOptions(repetitionPenalty: 2), prompt: [0, 1, 1, 4])
        XCTAssertEqual(logits.withUnsafeBufferPointer { sampler.penalized($0) }, [1, -2, 0.5, 1.9, -6])
        // 3 is the most likely after the penalty; once generated it is penalised too (0.95), so 0
        // (1.0) follows, and stays first: its penalty does not grow with repeats.
        XCTAssertEqual((0..<4).map { _ in sampler.sample(logits) }, [3, 0, 0, 0])
        // Below 1 the penalty favours the tokens already there.
        let favouring = Sampler(options: SamplingOptions(repetitionPenalty: 0.5), prompt: [1, 2])
        XCTAssertEqual(logits.withUnsafeBufferPointer { favouring.penalized($0) }, [2, -0.5, 1, 1.9, -3])
    }

    /// OpenAI's penalties, logit -= frequency * count + presence * (count > 0), over the generated
    /// tokens only (not the prompt): frequency pushes repeated tokens down further each time,
    /// presence only once.
    func testPresenceAndFrequencyPenaltiesFollowOpenAIsFormula() {
        let logits: [Float] = [1, 0.875, 0]
        // frequency 0.3: 1 - 0.3 c0 against 0.875 - 0.3 c1 take turns until both are below 0
        // (c0 = 4, c1 = 3), and the prompt's zeros do not count.
        var frequency = Sampler(options: SamplingOptions(frequencyPenalty: 0.3), prompt: [0, 0, 0])
        XCTAssertEqual((0..<8).map { _ in frequency.sample(logits) }, [0, 1, 0, 1, 0, 1, 0, 2])
        // presence 0.5: 0 (then 0.5) and 1 (then 0.375) are each pushed down once; 0 stays ahead.
        var presence = Sampler(options: SamplingOptions(presencePenalty: 0.5))
        XCTAssertEqual((0..<5).map { _ in presence.sample(logits) }, [0, 1, 0, 0, 0])
        XCTAssertEqual(logits.withUnsafeBufferPointer { presence.penalized($0) }, [0.5, 0.375, 0])
        // Negative values reward repeats.
        var rewarding = Sampler(options: SamplingOptions(frequencyPenalty: -1))
        XCTAssertEqual((0..<4).map { _ in rewarding.sample([0.9, 1, 0.95]) }, [1, 1, 1, 1])
    }

    func testCandidatesAreTheSoftmaxOfThePenalisedLogits() {
        var sampler = Sampler(options: SamplingOptions(temperature: 1, seed: 3, presencePenalty: 1))
        let logits: [Float] = [0, 0]
        let first = sampler.sample(logits)
        let candidates = sampler.candidates(logits)
        XCTAssertEqual(candidates.map(\.id), [0, 1])
        let drawnAgain = 1 / (1 + exp(1.0))
        XCTAssertEqual(candidates[Int(first)].probability, drawnAgain, accuracy: 1e-7)
        XCTAssertEqual(candidates[1 - Int(first)].probability, 1 - drawnAgain, accuracy: 1e-7)
    }

    func testPenaltiesOutOfRangeAreRejected() {
        for options in [SamplingOptions(repetitionPenalty: 0), SamplingOptions(repetitionPenalty: -1),
                        SamplingOptions(repetitionPenalty: .infinity), SamplingOptions(presencePenalty: 2.5),
                        SamplingOptions(frequencyPenalty: -2.01), SamplingOptions(frequencyPenalty: .nan)] {
            XCTAssertThrowsError(try options.validate(), "\(options)")
        }
        XCTAssertNoThrow(try SamplingOptions(repetitionPenalty: 1.3, presencePenalty: -2, frequencyPenalty: 2).validate())
    }

    /// Options encoded before the penalties existed still decode, with the penalties off.
    func testOptionsWithoutPenaltiesDecode() throws {
        let old = #"{"temperature": 0.7, "topK": 40, "topP": 0.9, "seed": 7}"#
        let options = try JSONDecoder().decode(SamplingOptions.self, from: Data(old.utf8))
        XCTAssertEqual(options, SamplingOptions(temperature: 0.7, topK: 40, topP: 0.9, seed: 7))
        XCTAssertFalse(options.hasPenalties)
        let penalised = SamplingOptions(temperature: 1, repetitionPenalty: 1.1, presencePenalty: 0.5, frequencyPenalty: 0.25)
        XCTAssertEqual(try JSONDecoder().decode(SamplingOptions.self, from: JSONEncoder().encode(penalised)), penalised)
    }

    func testSameSeedSameTokensDifferentSeedDifferentTokens() {
        let logits = (0..<50).map { Float($0 % 7) * 0.3 }
        func draws(_ seed: UInt64) -> [Int32] {
            var sampler = Sampler(options: SamplingOptions(temperature: 1, topK: 20, topP: 0.95, seed: seed))
            return (0..<200).map { _ in sampler.sample(logits) }
        }
        XCTAssertEqual(draws(123), draws(123))
        XCTAssertNotEqual(draws(123), draws(124))
    }

    func testDrawsFollowTheDistribution() {
        let logits = [0.5, 0.3, 0.2].map { Float(log($0)) }
        var sampler = Sampler(options: SamplingOptions(temperature: 1, seed: 99))
        var counts = [0, 0, 0]
        let n = 20_000
        for _ in 0..<n { counts[Int(sampler.sample(logits))] += 1 }
        for (count, p) in zip(counts, [0.5, 0.3, 0.2]) {
            XCTAssertEqual(Double(count) / Double(n), p, accuracy: 0.015)
        }
    }

    func testNaNLogitsAreNeverChosen() {
        let logits: [Float] = [.nan, 1, .nan, 0.5]
        let ids = Sampler(options: SamplingOptions(temperature: 1)).candidates(logits).map(\.id)
        XCTAssertEqual(Set(ids), [1, 3])
    }

    func testInvalidOptionsAreRejected() {
        XCTAssertThrowsError(try SamplingOptions(temperature: -1).validate())
        XCTAssertThrowsError(try SamplingOptions(temperature: .nan).validate())
        XCTAssertThrowsError(try SamplingOptions(topK: -2).validate())
        XCTAssertThrowsError(try SamplingOptions(topP: 0).validate())
        XCTAssertThrowsError(try SamplingOptions(topP: 1.5).validate())
        XCTAssertNoThrow(try SamplingOptions(temperature: 0.7, topK: 40, topP: 0.9).validate())
    }
}
