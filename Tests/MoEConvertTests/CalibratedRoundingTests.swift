import Foundation
import MoEFormat
import MoERuntime
import MoETestSupport
import XCTest
@testable import MoEConvert

/// Calibration-aware rounding on the built-in model: scales chosen by the importance of each
/// input channel over calibration text must never give a routed expert a larger output error,
/// on held-out tokens routed to it, than rounding to nearest.
final class CalibratedRoundingTests: XCTestCase {
    /// XᵀX of the inputs each routed expert read (key: layer, storage index), upper triangle.
    final class GramRecorder: RoutingObserver {
        var grams: [[Int]: (tokens: Int, gram: [Double])] = [:]

        func observe(layer: Int, decisions: [RoutingDecision], weightedOutputNorms: [[Float]]) {}

        func observeInputs(layer: Int, site: InputSite, rows: UnsafePointer<Float>, count: Int, width: Int) {
            guard case .expert(let e) = site else { return }
            var entry = grams[[layer, e]] ?? (0, [Double](repeating: 0, count: width * width))
            entry.gram.withUnsafeMutableBufferPointer { g in
                for t in 0..<count {
                    let x = rows + t * width
                    for i in 0..<width {
                        let xi = Double(x[i])
                        for j in i..<width { g[i * width + j] += xi * Double(x[j]) }
                    }
                }
            }
            entry.tokens += count
            grams[[layer, e]] = entry
        }
    }

    /// Σ_r Δ_r G Δ_rᵀ: the summed squared output error over the tokens G was built from.
    func outputError(_ w: [Float], _ deq: [Float], rows: Int, cols: Int, gram g: [Double]) -> Double {
        var total = 0.0
        for r in 0..<rows {
            let d = (0..<cols).map { Double(w[r * cols + $0] - deq[r * cols + $0]) }
            for i in 0..<cols {
                var s = g[i * cols + i] * d[i]
                for j in (i + 1)..<cols { s += 2 * g[i * cols + j] * d[j] }
                total += d[i] * s
            }
        }
        return total
    }

    func windows(_ file: String, tokenizer: any TextTokenizer, tokens: Int) throws -> [[Int32]] {
        let text = try String(contentsOf: Fixtures.tinyModel.appendingPathComponent(file), encoding: .utf8)
        return try Calibrator.windows([tokenizer.encode(text, addBOS: false, parseSpecialTokens: false)], context: 256, maxTokens: tokens)
    }

    func testNeverWorseThanNearestForAnyExpert() throws {
        let lm = try LanguageModel.load(at: Fixtures.tinyModel.path)
        let checkpoint = try Checkpoint(directory: Fixtures.tinyModel)
        let weights = try CheckpointWeights(checkpoint: checkpoint)
        let stats = try Calibrator.run(model: lm.model, weights: weights,
                                       windows: windows("calibration.txt", tokenizer: lm.tokenizer, tokens: 8192),
                                       source: "calibration.txt")
        let importance = try ImportanceMap(stats: stats)
        let recorder = GramRecorder()
        let cache = lm.model.makeCache(capacity: 256)
        for window in try windows("heldout.txt", tokenizer: lm.tokenizer, tokens: 4096) {
            cache.reset()
            _ = try lm.model.forward(window, cache: cache, lastOnly: true, observer: recorder)
        }
        let reader = TensorReader(checkpoint: checkpoint)
        var scratch: [UInt8] = []
        var compared = 0, better = 0
        let specs = ModelLayout(config: checkpoint.config).tensors.filter {
            $0.tensorClass == .routedExperts && !$0.name.hasSuffix(".down_proj.weight")
        }
        for spec in specs {
            let (rows, cols) = (spec.shape[0], spec.shape[1])
            var w = [Float](repeating: 0, count: rows * cols)
            try w.withUnsafeMutableBufferPointer { try reader.read(spec.name, start: 0, count: rows * cols, into: $0.baseAddress!, scratch: &scratch) }
            let imp = try XCTUnwrap(importance.importance(for: spec, cols: cols), spec.name)
            for f in [WeightFormat.q4g32] {
                let plain = try QuantizedMatrix(quantizing: w, rows: rows, cols: cols, format: f)
                let calibrated = try w.withUnsafeBufferPointer {
                    try QuantizedMatrix(copying: QuantizedMatrix.quantize($0, rows: rows, cols: cols, format: f, importance: imp),
                                        rows: rows, cols: cols, format: f)
                }
                guard let held = recorder.grams[[spec.layer!, spec.expert!]] else {
                    continue   // no held-out token reached this expert: nothing to compare
                }
                let ePlain = outputError(w, plain.dequantize(), rows: rows, cols: cols, gram: held.gram)
                let eCal = outputError(w, calibrated.dequantize(), rows: rows, cols: cols, gram: held.gram)
                XCTAssertLessThanOrEqual(eCal, ePlain, "\(spec.name) \(f): \(held.tokens) held-out tokens")
                compared += 1
                if eCal < ePlain { better += 1 }
            }
        }
        XCTAssertGreaterThan(compared, 80)
        XCTAssertGreaterThan(better, compared * 3 / 4, "calibration lowers most experts' error")
    }

    /// An expert that no calibration token reached has zero importance: it quantizes exactly as
    /// without calibration.
    func testExpertWithoutTokensRoundsToNearest() throws {
        let checkpoint = try Checkpoint(directory: Fixtures.tinyModel)
        let spec = try XCTUnwrap(ModelLayout(config: checkpoint.config).tensors.first { $0.name.hasSuffix("experts.3.up_proj.weight") })
        let cols = spec.shape[1], rows = spec.shape[0]
        let width = cols, experts = checkpoint.config.moeNumExperts
        let zero = CalibrationStats.ChannelStats(tokens: 0, sumSquares: [Double](repeating: 0, count: width))
        let inputs = checkpoint.config.moeLayers.map {
            CalibrationStats.LayerInputs(layer: $0, attention: zero, mlp: nil, sharedExperts: zero,
                                         experts: [CalibrationStats.ChannelStats](repeating: zero, count: experts))
        }
        let stats = CalibrationStats(model: .init(identity: "x", identityScheme: ModelIdentity.scheme, architecture: "ernie",
                                                  numExperts: experts, moeK: 2, moeLayers: checkpoint.config.moeLayers),
                                     data: .init(source: "none", tokens: 0, windows: 0, context: 0), layers: [], inputs: inputs)
        let imp = try XCTUnwrap(ImportanceMap(stats: stats).importance(for: spec, cols: cols))
        var w = [Float](repeating: 0, count: rows * cols)
        var scratch: [UInt8] = []
        try w.withUnsafeMutableBufferPointer { try TensorReader(checkpoint: checkpoint).read(spec.name, start: 0, count: rows * cols, into: $0.baseAddress!, scratch: &scratch) }
        for f in [WeightFormat.q4g32, .nl4g32] {
            try w.withUnsafeBufferPointer {
                XCTAssertEqual(try QuantizedMatrix.quantize($0, rows: rows, cols: cols, format: f, importance: imp),
                               try QuantizedMatrix.quantize($0, rows: rows, cols: cols, format: f))
            }
        }
    }

    /// Importance covers the products that read the hidden states and nothing else.
    func testWhichTensorsGetImportance() throws {
        let checkpoint = try Checkpoint(directory: Fixtures.tinyModel)
        let stats = try Fixtures.calibrateTiny(tokens: 512)
        let importance = try ImportanceMap(stats: stats)
        for spec in ModelLayout(config: checkpoint.config).tensors where spec.shape.count == 2 {
            let covered = importance.importance(for: spec, cols: spec.shape[1]) != nil
            let reads = ["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"].contains { spec.name.hasSuffix(".\($0).weight") }
                && spec.tensorClass != .router
            XCTAssertEqual(covered, reads, spec.name)
        }
    }
}

extension Fixtures {
    /// Calibration stats of the built-in model over the first `tokens` tokens of its calibration split.
    static func calibrateTiny(tokens: Int) throws -> CalibrationStats {
        let lm = try LanguageModel.load(at: tinyModel.path)
        let weights = try CheckpointWeights(checkpoint: Checkpoint(directory: tinyModel))
        let text = try String(contentsOf: tinyModel.appendingPathComponent("calibration.txt"), encoding: .utf8)
        let ids = try lm.tokenizer.encode(text, addBOS: false, parseSpecialTokens: false)
        return try Calibrator.run(model: lm.model, weights: weights, windows: Calibrator.windows([ids], context: 256, maxTokens: tokens),
                                  source: "calibration.txt")
    }
}
