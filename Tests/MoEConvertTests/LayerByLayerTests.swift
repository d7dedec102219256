import Foundation
import XCTest
import MoEFormat
import MoERuntime
import MoETestSupport
import MoETokenizer
@testable import MoEConvert

/// The layer-by-layer calibration engine against the per-window path, the reference: the same
/// statistics on every MoE fixture and on the built-in model (counts exact, sums within 1e-5).
final class LayerByLayerTests: XCTestCase {
    func testEnginesGiveTheSameStatisticsOnTheFixtures() throws {
        for name in ["moe_basic", "moe_shared2_bias", "moe_noshared_interval2", "moe_sharded"] {
            let weights = try Fixtures.weights(name)
            let model = try ErnieModel(weights: weights)
            let windows = try Fixtures.sequences(name)
            let reference = try Calibrator.run(model: model, weights: weights, windows: windows, source: "t", engine: .perWindow)
            // One pass for all windows, and one window per pass (a budget below one window's states).
            for budget in [Calibrator.defaultMemoryBudget, 1] {
                let stats = try Calibrator.run(model: model, weights: weights, windows: windows, source: "t",
                                               engine: .layerByLayer(memoryBudget: budget))
                assertSame(stats, reference, "\(name) budget \(budget)")
            }
            // The released pages are read again: the model still matches transformers.
            let golden = try Fixtures.goldenLogits(name, 0)
            XCTAssertLessThanOrEqual(relativeMaxError(try model.logits(windows[0]), golden.values), 1e-4, name)
        }
    }

    func testEnginesGiveTheSameStatisticsOnTheBuiltInModel() throws {
        let weights = try CheckpointWeights(checkpoint: Checkpoint(directory: Fixtures.tinyModel))
        let model = try ErnieModel(weights: weights)
        let tokenizer = try Tokenizer(directory: Fixtures.tinyModel)
        let text = try String(contentsOf: Fixtures.tinyModel.appendingPathComponent("calibration.txt"), encoding: .utf8)
        let windows = try Calibrator.windows([tokenizer.encode(text)], context: 256, maxTokens: 3000)
        let reference = try Calibrator.run(model: model, weights: weights, windows: windows, source: "t", engine: .perWindow)
        // 2.5 windows' hidden states per pass: several passes, the last one shorter.
        let budget = 640 * model.config.hiddenSize * 4
        let stats = try Calibrator.run(model: model, weights: weights, windows: windows, source: "t",
                                       engine: .layerByLayer(memoryBudget: budget))
        assertSame(stats, reference, "tiny-moe")
        XCTAssertEqual(stats.data.tokens, 3000)
    }

    func assertSame(_ a: CalibrationStats, _ b: CalibrationStats, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.model, b.model, what, file: file, line: line)
        XCTAssertEqual(a.data, b.data, what, file: file, line: line)
        XCTAssertEqual(a.layers.map(\.layer), b.layers.map(\.layer), what, file: file, line: line)
        for (x, y) in zip(a.layers, b.layers) {
            XCTAssertEqual(x.count, y.count, "\(what) layer \(x.layer)", file: file, line: line)
            for (u, v) in [(x.weightSum, y.weightSum), (x.weightMean, y.weightMean), (x.outputNormMean, y.outputNormMean),
                           (x.probabilitySum, y.probabilitySum), ([x.routerEntropy, x.selectionEntropy], [y.routerEntropy, y.selectionEntropy])] {
                XCTAssertTrue(close(u, v), "\(what) layer \(x.layer)", file: file, line: line)
            }
        }
        guard let ai = a.inputs, let bi = b.inputs else { return XCTFail("\(what): no input statistics", file: file, line: line) }
        XCTAssertEqual(ai.map(\.layer), bi.map(\.layer), what, file: file, line: line)
        for (x, y) in zip(ai, bi) {
            let xs = [x.attention] + [x.mlp, x.sharedExperts].compactMap { $0 } + (x.experts ?? [])
            let ys = [y.attention] + [y.mlp, y.sharedExperts].compactMap { $0 } + (y.experts ?? [])
            XCTAssertEqual(xs.map(\.tokens), ys.map(\.tokens), "\(what) inputs of layer \(x.layer)", file: file, line: line)
            for (u, v) in zip(xs, ys) {
                XCTAssertTrue(close(u.sumSquares, v.sumSquares), "\(what) inputs of layer \(x.layer)", file: file, line: line)
            }
        }
    }

    /// Equal lengths and every value within 1e-5 of the other, relative to the larger magnitude.
    func close(_ a: [Double], _ b: [Double]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= 1e-5 * max(abs($0), abs($1), 1e-30) }
    }
}

/// What the input statistics hold, recomputed from the weights and the routing.
final class InputStatsTests: XCTestCase {
    func testInputStatisticsFollowTheTokensAndTheRouting() throws {
        let name = "moe_basic"
        let weights = try Fixtures.weights(name)
        let c = weights.config
        let stats = try Fixtures.calibrate(name)
        let tokens = stats.data.tokens
        let inputs = try XCTUnwrap(stats.inputs)
        XCTAssertEqual(inputs.map(\.layer), Array(0..<c.numHiddenLayers))
        for l in inputs {
            XCTAssertEqual(l.attention.tokens, tokens)
            XCTAssertEqual(l.attention.sumSquares.count, c.hiddenSize)
            if let routing = stats.layer(l.layer) {
                let experts = try XCTUnwrap(l.experts)
                XCTAssertEqual(experts.map(\.tokens), routing.count, "layer \(l.layer)")
                XCTAssertEqual(l.sharedExperts?.tokens, c.moeNumSharedExperts > 0 ? tokens : nil)
                XCTAssertNil(l.mlp)
                for (e, s) in experts.enumerated() where s.tokens == 0 { XCTAssertEqual(Set(s.sumSquares), [0], "expert \(e)") }
            } else {
                XCTAssertEqual(l.mlp?.tokens, tokens)
                XCTAssertNil(l.experts)
            }
        }
        // Layer 0's attention reads the normalised embeddings of the tokens.
        let embedding = try weights.matrix("model.embed_tokens.weight", rows: c.vocabSize, cols: c.hiddenSize)
        let norm = try weights.vector("model.layers.0.input_layernorm.weight", count: c.hiddenSize)
        var expected = [Double](repeating: 0, count: c.hiddenSize)
        var row = [Float](repeating: 0, count: c.hiddenSize)
        for token in try Fixtures.sequences(name).joined() {
            row.withUnsafeMutableBufferPointer { embedding.copyRow(Int(token), into: $0.baseAddress!) }
            let meanSquare = row.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(c.hiddenSize)
            let scale = 1 / (meanSquare + c.rmsNormEps).squareRoot()
            for i in 0..<c.hiddenSize {
                let v = Double(row[i]) * scale * Double(norm[i])
                expected[i] += v * v
            }
        }
        for (got, want) in zip(inputs[0].attention.sumSquares, expected) {
            XCTAssertEqual(got, want, accuracy: 1e-5 * max(want, 1))
        }
    }
}
