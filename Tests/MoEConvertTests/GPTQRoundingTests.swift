import Foundation
import MoEFormat
import MoEKernels
import MoERuntime
import MoETestSupport
import XCTest
@testable import MoEConvert

/// Error-compensating (GPTQ) rounding: the kernel against round-to-nearest where nothing can
/// propagate, its stored bytes against what it says it chose, the Gram matrices against the
/// calibration statistics, and on the built-in model against round-to-nearest on held-out text.
final class GPTQRoundingTests: XCTestCase {
    static let formats: [WeightFormat] = [.int8, .q4g32, .q4g64, .q4g128, .nl4g32, .q3g32, .q3g64, .q2g32, .q2g64]

    struct Random {
        var state: UInt64
        mutating func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24) - 0.5
        }
    }

    func gptq(_ w: [Float], rows: Int, cols: Int, _ f: WeightFormat, hinv: [Float]) throws -> (bytes: [UInt8], rounded: [Float]) {
        var work = w
        var out = [UInt8](repeating: 0, count: try f.byteCount(rows: rows, cols: cols))
        var bad: Int64 = 0
        let rc = work.withUnsafeMutableBufferPointer { wb in
            out.withUnsafeMutableBytes { moe_quantize_gptq(f.id, wb.baseAddress, Int64(rows), Int64(cols), hinv, $0.baseAddress, $0.count, &bad) }
        }
        guard rc == MOE_OK else { throw QuantError(code: rc, format: f, rows: rows, cols: cols, row: bad) }
        return (out, work)
    }

    /// With a diagonal Hessian no error can move to another column: the codes are round-to-nearest's
    /// (for q4g*, with the scale search, which importance turns on).
    func testDiagonalHessianIsRoundToNearest() throws {
        var rng = Random(state: 7)
        let rows = 6, cols = 256
        let w = (0..<(rows * cols)).map { i in rng.next() * (i % 37 == 3 ? 0.6 : 0.1) }
        var hinv = [Float](repeating: 0, count: cols * cols)
        for j in 0..<cols { hinv[j * cols + j] = 1 / (1 + Float(j % 5)).squareRoot() }
        for f in Self.formats {
            let nearest = try w.withUnsafeBufferPointer {
                try QuantizedMatrix.quantize($0, rows: rows, cols: cols, format: f,
                                             importance: f.traits.levels == 16 && f.traits.grid == nil ? [Float](repeating: 1, count: cols) : nil)
            }
            XCTAssertEqual(try gptq(w, rows: rows, cols: cols, f, hinv: hinv).bytes, nearest, "\(f)")
        }
    }

    /// On correlated inputs the compensated rounding lowers the output error under the Hessian it
    /// fits, and what it leaves in w is exactly what its bytes decode to.
    func testLowersOutputErrorOnCorrelatedInputs() throws {
        var rng = Random(state: 11)
        let rows = 32, cols = 128, tokens = 1024
        let w = (0..<(rows * cols)).map { _ in rng.next() * 0.1 }
        // x_t: a shared component plus noise, and each channel leaning on its neighbour.
        var x = [Float](repeating: 0, count: tokens * cols)
        for t in 0..<tokens {
            let common = rng.next()
            for c in 0..<cols { x[t * cols + c] = common + rng.next() + (c > 0 ? 0.7 * x[t * cols + c - 1] : 0) }
        }
        var h = [Float](repeating: 0, count: cols * cols)
        for t in 0..<tokens { for i in 0..<cols { for j in 0..<cols { h[i * cols + j] += x[t * cols + i] * x[t * cols + j] } } }
        let u = try XCTUnwrap(WeightRounding.inverseCholeskyFactor(h, width: cols, damping: 0.01))
        for f in Self.formats {
            let (bytes, rounded) = try gptq(w, rows: rows, cols: cols, f, hinv: u)
            XCTAssertEqual(try QuantizedMatrix(copying: bytes, rows: rows, cols: cols, format: f).dequantize(), rounded, "\(f)")
            let nearest = try w.withUnsafeBufferPointer { try QuantizedMatrix.quantize($0, rows: rows, cols: cols, format: f) }
            let eNearest = try WeightRounding.rowErrors(w, bytes: nearest, rows: rows, cols: cols, format: f, hessian: h).reduce(0, +)
            let eCompensated = try WeightRounding.rowErrors(w, bytes: bytes, rows: rows, cols: cols, format: f, hessian: h).reduce(0, +)
            XCTAssertLessThan(eCompensated, 0.8 * eNearest, "\(f)")
        }
    }

    func testRejectsWhatItCannotRound() throws {
        let cols = 64
        var hinv = [Float](repeating: 0, count: cols * cols)
        for j in 0..<cols { hinv[j * cols + j] = 1 }
        let w = [Float](repeating: 0.01, count: 2 * cols)
        XCTAssertEqual(moe_gptq_supported(WeightFormat.int4g64.id), 0)
        XCTAssertEqual(moe_gptq_supported(WeightFormat.f32.id), 0)
        XCTAssertThrowsError(try gptq(w, rows: 2, cols: cols, .int4g64, hinv: hinv)) {
            XCTAssertEqual(($0 as? QuantError)?.kind, .unknownFormat)
        }
        var nan = w
        nan[cols + 5] = .nan
        XCTAssertThrowsError(try gptq(nan, rows: 2, cols: cols, .q4g64, hinv: hinv)) {
            XCTAssertEqual(($0 as? QuantError)?.kind, .nonFinite)
            XCTAssertTrue("\($0)".contains("row 1"), "\($0)")
        }
        hinv[3 * cols + 3] = 0
        XCTAssertThrowsError(try gptq(w, rows: 2, cols: cols, .q4g64, hinv: hinv))
        XCTAssertNil(WeightRounding.inverseCholeskyFactor([Float](repeating: 0, count: cols * cols), width: cols, damping: 0.01))
    }

    func windows(_ file: String, tokens: Int) throws -> [[Int32]] {
        try SizePlanner.windows(checkpoint: Checkpoint(directory: Fixtures.tinyModel), data: Fixtures.tinyModel.appendingPathComponent(file),
                                maxTokens: tokens, context: 256)
    }

    /// Two accumulations of one pass: the Gram matrices' diagonals are the calibration file's
    /// per-channel sums of squares, and every routed token lands in the fit or the held-out half.
    func testGramDiagonalIsTheInputStatistics() throws {
        let checkpoint = try Checkpoint(directory: Fixtures.tinyModel)
        let weights = try CheckpointWeights(checkpoint: checkpoint)
        let windows = try windows("calibration.txt", tokens: 2048)
        let stats = try Calibrator.run(model: ErnieModel(weights: weights), weights: weights, windows: windows, source: "calibration.txt")
        let hessians = try InputHessians.collect(checkpoint: checkpoint, windows: windows)
        let layout = ModelLayout(config: checkpoint.config)
        var checked = 0
        for layer in try XCTUnwrap(stats.inputs) {
            // the statistics keep the width of what they cover, whatever else the pass reports
            XCTAssertTrue((layer.experts ?? []).allSatisfy { $0.sumSquares.count == checkpoint.config.hiddenSize })
            for (e, channels) in (layer.experts ?? []).enumerated() {
                let spec = try XCTUnwrap(layout.tensors.first { $0.layer == layer.layer && $0.expert == e && $0.name.hasSuffix(".up_proj.weight") })
                guard let g = hessians.gram(for: spec) else {
                    XCTAssertEqual(channels.tokens, 0)
                    continue
                }
                XCTAssertEqual(g.fitTokens + g.heldOutTokens, channels.tokens)
                // every fourth run of 64 rows a site reads is held out
                if channels.tokens >= InputHessians.run * InputHessians.heldOutEvery { XCTAssertGreaterThan(g.heldOutTokens, 0) }
                for c in 0..<g.width {
                    let diagonal = Double(g.fit[c * g.width + c] + g.heldOut[c * g.width + c])
                    XCTAssertEqual(diagonal, channels.sumSquares[c], accuracy: 1e-4 * max(channels.sumSquares[c], 1))
                }
                checked += 1
            }
            let q = try XCTUnwrap(layout.tensors.first { $0.layer == layer.layer && $0.name.hasSuffix(".q_proj.weight") })
            XCTAssertEqual(hessians.gram(for: q).map { $0.fitTokens + $0.heldOutTokens }, layer.attention.tokens)
        }
        XCTAssertGreaterThan(checked, 40)
        // down and o_proj read other widths: the intermediate and the heads' outputs
        let down = try XCTUnwrap(layout.tensors.first { $0.tensorClass == .routedExperts && $0.name.hasSuffix(".down_proj.weight") })
        XCTAssertEqual(hessians.gram(for: down)?.width, checkpoint.config.moeIntermediateSize)
        let o = try XCTUnwrap(layout.tensors.first { $0.name.hasSuffix(".o_proj.weight") })
        XCTAssertEqual(hessians.gram(for: o)?.width, checkpoint.config.numAttentionHeads * checkpoint.config.headDim)
    }

    /// The built-in model: for every routed expert's gate, up and down, at 4, 3 and 2 bits (g32), the
    /// compensated rounding (fitted on calibration text) gives an output error on held-out text
    /// no larger than rounding to nearest with calibrated scales, and much lower over all.
    func testNeverWorseThanNearestForAnyExpert() throws {
        let checkpoint = try Checkpoint(directory: Fixtures.tinyModel)
        let calibration = try windows("calibration.txt", tokens: 16384)
        let weights = try CheckpointWeights(checkpoint: checkpoint)
        let stats = try Calibrator.run(model: ErnieModel(weights: weights), weights: weights, windows: calibration, source: "calibration.txt")
        let rounding = WeightRounding(importance: try ImportanceMap(stats: stats),
                                      hessians: try InputHessians.collect(checkpoint: checkpoint, windows: calibration))
        let heldOut = try InputHessians.collect(checkpoint: checkpoint, windows: windows("heldout.txt", tokens: 8192))
        let reader = TensorReader(checkpoint: checkpoint)
        var scratch: [UInt8] = []
        var compared = 0
        var totals: [WeightFormat: (nearest: Double, compensated: Double)] = [:]
        for spec in ModelLayout(config: checkpoint.config).tensors where spec.tensorClass == .routedExperts {
            let (rows, cols) = (spec.shape[0], spec.shape[1])
            var w = [Float](repeating: 0, count: rows * cols)
            try w.withUnsafeMutableBufferPointer { try reader.read(spec.name, start: 0, count: rows * cols, into: $0.baseAddress!, scratch: &scratch) }
            guard let g = heldOut.gram(for: spec), g.fitTokens + g.heldOutTokens > 0 else { continue }
            let h = zip(g.fit, g.heldOut).map { $0 + $1 }
            for f in [WeightFormat.q4g32, .q3g32, .q2g32] {
                let nearest = try WeightRounding(importance: rounding.importance).quantize(spec, values: w, rows: rows, cols: cols, format: f)
                let compensated = try rounding.quantize(spec, values: w, rows: rows, cols: cols, format: f)
                let eNearest = try WeightRounding.rowErrors(w, bytes: nearest.bytes, rows: rows, cols: cols, format: f, hessian: h).reduce(0, +)
                let eCompensated = try WeightRounding.rowErrors(w, bytes: compensated.bytes, rows: rows, cols: cols, format: f, hessian: h).reduce(0, +)
                XCTAssertLessThanOrEqual(eCompensated, eNearest, "\(spec.name) \(f): \(g.fitTokens + g.heldOutTokens) held-out tokens")
                totals[f, default: (0, 0)].nearest += eNearest
                totals[f, default: (0, 0)].compensated += eCompensated
                compared += 1
            }
        }
        XCTAssertGreaterThan(compared, 3 * 130)
        for (f, t) in totals { XCTAssertLessThan(t.compensated, 0.75 * t.nearest, "\(f): the compensated rounding lowers the error over all") }
    }

    /// The converter's streamed pass (one layer's matrices at a time, each layer packed as the pass
    /// leaves it) stores exactly what rounding with all the matrices at once stores, in layout order.
    func testStreamedPassEqualsAllAtOnce() throws {
        let checkpoint = try Checkpoint(directory: Fixtures.tinyModel)
        let windows = try windows("calibration.txt", tokens: 4096)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gptq-stream-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var bundles: [BundleFile] = []
        for (name, compensation) in [("all", Compensation.hessians(try InputHessians.collect(checkpoint: checkpoint, windows: windows))),
                                     ("stream", .pass(windows: windows))] {
            let out = dir.appendingPathComponent("\(name).mpk").path
            try Converter.convert(checkpoint: Fixtures.tinyModel.path, output: out,
                                  options: ConvertOptions(profile: try Profile.load("wint4-all"), compensation: compensation))
            bundles.append(try BundleFile(path: out))
        }
        let (all, stream) = (bundles[0], bundles[1])
        XCTAssertEqual(all.manifest.tensors.map(\.name), stream.manifest.tensors.map(\.name))
        XCTAssertEqual(all.manifest.provenance.parameters, stream.manifest.provenance.parameters)
        XCTAssertEqual(stream.manifest.provenance.parameters["rounding"], "gptq")
        for (a, b) in zip(all.manifest.tensors, stream.manifest.tensors) {
            let pa = try all.payload(a.payload, what: a.name), pb = try stream.payload(b.payload, what: b.name)
            XCTAssertTrue(pa.buffer.elementsEqual(pb.buffer), a.name)
        }
    }

    /// A weight whose inputs too few calibration tokens reached rounds exactly as without them.
    func testTooFewTokensRoundsToNearest() throws {
        let checkpoint = try Checkpoint(directory: Fixtures.tinyModel)
        let few = try windows("calibration.txt", tokens: 20)
        let rounding = WeightRounding(hessians: try InputHessians.collect(checkpoint: checkpoint, windows: few))
        let reader = TensorReader(checkpoint: checkpoint)
        var scratch: [UInt8] = []
        for spec in ModelLayout(config: checkpoint.config).tensors where spec.tensorClass == .routedExperts && spec.expert! < 4 {
            let (rows, cols) = (spec.shape[0], spec.shape[1])
            XCTAssertFalse(rounding.compensates(spec, format: .q4g32))
            var w = [Float](repeating: 0, count: rows * cols)
            try w.withUnsafeMutableBufferPointer { try reader.read(spec.name, start: 0, count: rows * cols, into: $0.baseAddress!, scratch: &scratch) }
            let result = try rounding.quantize(spec, values: w, rows: rows, cols: cols, format: .q4g32)
            XCTAssertEqual(result.compensatedRows, 0)
            XCTAssertEqual(result.bytes, try w.withUnsafeBufferPointer { try QuantizedMatrix.quantize($0, rows: rows, cols: cols, format: .q4g32) })
        }
    }
}
