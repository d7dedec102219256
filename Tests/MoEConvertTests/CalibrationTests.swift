import Foundation
import XCTest
import MoEFormat
import MoERuntime
import MoETestSupport
@testable import MoEConvert

final class CalibrationTests: XCTestCase {
    /// Every token of every MoE fixture (ERNIE, Qwen3-MoE, Mixtral) goes to the experts
    /// transformers chose, with its weights.
    func testExpertsChosenEqualTransformers() throws {
        final class Record: RoutingObserver {
            var layers: [Int: [RoutingDecision]] = [:]
            func observe(layer: Int, decisions: [RoutingDecision], weightedOutputNorms: [[Float]]) { layers[layer] = decisions }
        }
        for name in Fixtures.checkpointNames where try Fixtures.weights(name).config.moeNumExperts > 0 {
            let model = try ErnieModel(weights: Fixtures.weights(name))
            for (index, sequence) in try Fixtures.sequences(name).enumerated() {
                let record = Record()
                _ = try model.forward(sequence, cache: model.makeCache(capacity: sequence.count), observer: record)
                let golden = try Fixtures.routing(name, index)
                XCTAssertEqual(Set(record.layers.keys), Set(golden.keys), name)
                for (layer, tokens) in golden {
                    for (t, token) in tokens.enumerated() {
                        let decision = try XCTUnwrap(record.layers[layer]?[t])
                        XCTAssertEqual(decision.experts, token.experts, "\(name) sequence \(index) layer \(layer) token \(t)")
                        for (w, expected) in zip(decision.weights, token.weights) {
                            XCTAssertEqual(Double(w), expected, accuracy: 1e-5, "\(name) layer \(layer) token \(t)")
                        }
                    }
                }
            }
        }
    }

    /// Counts and routing weights must equal those derived from transformers' routing.
    func testStatsMatchTransformersRouting() throws {
        for name in ["moe_basic", "moe_shared2_bias", "moe_noshared_interval2", "qwen3_moe_basic", "qwen3_moe_tied_bf16",
                     "mixtral_basic", "mixtral_window_bf16"] {
            let stats = try Fixtures.calibrate(name)
            let config = try Fixtures.weights(name).config
            var count: [Int: [Int]] = [:], weight: [Int: [Double]] = [:]
            for index in 0..<3 {
                for (layer, tokens) in try Fixtures.routing(name, index) {
                    for token in tokens {
                        for (e, w) in zip(token.experts, token.weights) {
                            count[layer, default: Array(repeating: 0, count: config.moeNumExperts)][e] += 1
                            weight[layer, default: Array(repeating: 0, count: config.moeNumExperts)][e] += w
                        }
                    }
                }
            }
            XCTAssertEqual(stats.layers.map(\.layer), config.moeLayers, name)
            XCTAssertEqual(stats.data.tokens, 43, name)
            for layer in stats.layers {
                XCTAssertEqual(layer.count, count[layer.layer], "\(name) layer \(layer.layer)")
                for e in 0..<config.moeNumExperts {
                    XCTAssertEqual(layer.weightSum[e], weight[layer.layer]![e], accuracy: 1e-5, "\(name) layer \(layer.layer) expert \(e)")
                    let mean = layer.count[e] > 0 ? weight[layer.layer]![e] / Double(layer.count[e]) : 0
                    XCTAssertEqual(layer.weightMean[e], mean, accuracy: 1e-6)
                }
                // Every token picks k experts, and the renormalised weights of each token sum to 1.
                XCTAssertEqual(layer.count.reduce(0, +), 43 * config.moeK)
                if config.router.renormalize { XCTAssertEqual(layer.weightSum.reduce(0, +), 43, accuracy: 1e-4) }
                XCTAssertEqual(layer.probabilitySum.reduce(0, +), 43, accuracy: 1e-4)
                XCTAssertGreaterThan(layer.routerEntropy, 0)
                XCTAssertLessThanOrEqual(layer.routerEntropy, log(Double(config.moeNumExperts)) + 1e-9)
                XCTAssertLessThanOrEqual(layer.selectionEntropy, log(Double(config.moeNumExperts)) + 1e-9)
            }
        }
    }

    /// The REAP statistic is the mean norm of the weighted expert output, recomputed here from
    /// the expert weights for one token.
    func testOutputNormIsWeightedExpertOutputNorm() throws {
        let weights = try Fixtures.weights("moe_basic")
        let model = try ErnieModel(weights: weights)
        final class Capture: RoutingObserver {
            var seen: [(Int, [RoutingDecision], [[Float]])] = []
            func observe(layer: Int, decisions: [RoutingDecision], weightedOutputNorms: [[Float]]) {
                seen.append((layer, decisions, weightedOutputNorms))
            }
        }
        let capture = Capture()
        _ = try model.forward([1, 104, 69], cache: model.makeCache(), observer: capture)
        XCTAssertEqual(capture.seen.map(\.0), [1, 2])
        let stats = try Calibrator.run(model: model, weights: weights, windows: [[1, 104, 69]], source: "t")
        for (layer, decisions, norms) in capture.seen {
            var sums = [Double](repeating: 0, count: 8), counts = [Int](repeating: 0, count: 8)
            for (d, n) in zip(decisions, norms) {
                for (slot, e) in d.experts.enumerated() {
                    sums[e] += Double(n[slot])
                    counts[e] += 1
                }
            }
            let expected = zip(sums, counts).map { $1 > 0 ? $0 / Double($1) : 0 }
            let actual = stats.layer(layer)!.outputNormMean
            for e in 0..<8 { XCTAssertEqual(actual[e], expected[e], accuracy: 1e-6) }
            XCTAssertTrue(actual.contains { $0 > 0 })
        }
    }

    func testWindowsRespectContextBudgetAndDocuments() throws {
        let docs: [[Int32]] = [Array(1...10), Array(20...22)]
        XCTAssertEqual(try Calibrator.windows(docs, context: 4, maxTokens: 100),
                       [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10], [20, 21, 22]])
        XCTAssertEqual(try Calibrator.windows(docs, context: 4, maxTokens: 6), [[1, 2, 3, 4], [5, 6]])
        XCTAssertThrowsError(try Calibrator.windows([[]], context: 4, maxTokens: 6))
        XCTAssertThrowsError(try Calibrator.windows(docs, context: 0, maxTokens: 6))
    }

    func testDenseModelIsRejected() throws {
        let weights = try Fixtures.weights("dense")
        let model = try ErnieModel(weights: weights)
        XCTAssertThrowsError(try Calibrator.run(model: model, weights: weights, windows: [[1, 2]], source: "t")) {
            XCTAssertTrue("\($0)".contains("no mixture-of-experts layers"))
        }
    }
}
