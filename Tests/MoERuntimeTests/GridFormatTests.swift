import MoEFormat
import MoEKernels
import XCTest
@testable import MoERuntime

/// The 16-level int4 formats (q4g*) and the non-uniform grid format (nl4g32): layout, the
/// quantizer's rules and error bounds, and the importance-weighted scale search. The kernel
/// paths of every format are tested against the portable one in QuantKernelTests.
final class GridFormatTests: XCTestCase {
    static let q4Grid: [Float] = (0..<16).map { Float($0 - 8) }
    static let nl4Grid: [Float] = (0..<16).map { Float(WeightFormat.nl4g32.traits.grid![$0]) }

    /// Gaussian-like weights (sum of four uniforms), a few outliers.
    func gaussian(_ n: Int, seed: UInt64) -> [Float] {
        var rng = TestRandom(seed: seed)
        return (0..<n).map { i in
            let v = (rng.next() + rng.next() + rng.next() + rng.next() - 2) * 0.05
            return i % 61 == 7 ? v * 5 : v
        }
    }

    func codes(_ bytes: [UInt8], group: Int, index j: Int) -> Int {
        let g = j / group, i = j % group, gb = 2 + group / 2
        let b = bytes[g * gb + 2 + 16 * (i / 32) + (i % 16)]
        return i % 32 < 16 ? Int(b & 0xF) : Int(b >> 4)
    }

    func scale(_ bytes: [UInt8], group: Int, index j: Int) -> Float {
        let o = (j / group) * (2 + group / 2)
        return moe_f16_to_f32(UInt16(bytes[o]) | UInt16(bytes[o + 1]) << 8)
    }

    func quantize(_ w: [Float], cols: Int, _ f: WeightFormat, importance: [Float]? = nil) throws -> [UInt8] {
        try w.withUnsafeBufferPointer { try QuantizedMatrix.quantize($0, rows: w.count / cols, cols: cols, format: f, importance: importance) }
    }

    func decode(_ bytes: [UInt8], rows: Int, cols: Int, _ f: WeightFormat) throws -> [Float] {
        try QuantizedMatrix(copying: bytes, rows: rows, cols: cols, format: f).dequantize()
    }

    /// The plain rule, written out: the weight of largest magnitude maps onto grid[0], nearest codes.
    func plainError(_ v: ArraySlice<Float>, grid: [Float], imp: ArraySlice<Float>?) -> Double {
        let extreme = v.max { abs($0) < abs($1) }!
        let d = moe_f16_to_f32(moe_f32_to_f16(extreme / grid[0]))
        var err = 0.0
        for (k, x) in zip(v.indices, v) {
            let best = grid.map { Double(x) - Double(d) * Double($0) }.min { abs($0) < abs($1) }!
            err += Double(imp?[k] ?? 1) * best * best
        }
        return err
    }

    func weightedError(_ w: [Float], _ deq: [Float], _ imp: [Float]?, cols: Int, range: Range<Int>) -> Double {
        range.reduce(0.0) { acc, i in
            let e = Double(w[i] - deq[i])
            return acc + Double(imp?[i % cols] ?? 1) * e * e
        }
    }

    func testQ4MapsTheExtremeToMinusEight() throws {
        for sign: Float in [1, -1] {
            var w = gaussian(32, seed: 3).map { $0 * 0.5 }
            w[5] = 0.8 * sign
            let bytes = try quantize(w, cols: 32, .q4g32)
            XCTAssertEqual(scale(bytes, group: 32, index: 0), moe_f16_to_f32(moe_f32_to_f16(-0.1 * sign)))
            XCTAssertEqual(codes(bytes, group: 32, index: 5), 0, "nibble 0 is -8")
            let deq = try decode(bytes, rows: 1, cols: 32, .q4g32)
            for j in 0..<32 { XCTAssertEqual(deq[j], scale(bytes, group: 32, index: j) * Float(codes(bytes, group: 32, index: j) - 8)) }
        }
    }

    /// Half a step where the value lies in the grid's span (-8.5..7.5 steps), a step (plus the
    /// f16 rounding of the scale) at the opposite extreme, which clamps to 7.
    func testQ4ErrorBound() throws {
        for f in [WeightFormat.q4g32, .q4g64, .q4g128] {
            let g = f.groupSize!, cols = 3 * g
            let w = TestRandom(seed: 4).weightsCopy(7 * cols)
            let bytes = try quantize(w, cols: cols, f)
            let deq = try decode(bytes, rows: 7, cols: cols, f)
            for i in 0..<w.count {
                let r = i / cols, c = i % cols
                let s = scale(Array(bytes[(r * bytes.count / 7)...]), group: g, index: c)
                let err = abs(w[i] - deq[i]), t = w[i] / s
                if t >= -8.5 && t <= 7.5 { XCTAssertLessThanOrEqual(err, abs(s) / 2 * (1 + 1e-5), "\(f) \(i)") }
                XCTAssertLessThanOrEqual(err, abs(s) * (1 + 1.0 / 128), "\(f) \(i)")
            }
        }
    }

    /// The 16th level at the same bytes: a smaller weight error than the 15-level int4.
    func testQ4BeatsFifteenLevels() throws {
        for (old, new) in [(WeightFormat.int4g32, WeightFormat.q4g32), (.int4g64, .q4g64), (.int4g128, .q4g128)] {
            let cols = 256, w = gaussian(64 * cols, seed: 5)
            let e15 = weightedError(w, try decode(try quantize(w, cols: cols, old), rows: 64, cols: cols, old), nil, cols: cols, range: 0..<w.count)
            let e16 = weightedError(w, try decode(try quantize(w, cols: cols, new), rows: 64, cols: cols, new), nil, cols: cols, range: 0..<w.count)
            XCTAssertLessThan(e16, 0.95 * e15, "\(new) against \(old)")
        }
    }

    func testNL4DecodesOnTheGrid() throws {
        let cols = 96, w = gaussian(5 * cols, seed: 6)
        let bytes = try quantize(w, cols: cols, .nl4g32)
        let deq = try decode(bytes, rows: 5, cols: cols, .nl4g32)
        let rb = WeightFormat.nl4g32.rowBytes(cols: cols)!
        for i in 0..<w.count {
            let row = Array(bytes[(i / cols * rb)..<((i / cols + 1) * rb)])
            XCTAssertEqual(deq[i], scale(row, group: 32, index: i % cols) * Self.nl4Grid[codes(row, group: 32, index: i % cols)])
        }
    }

    /// The search includes the plain rule, so no group's error exceeds the plain rule's; and on
    /// weight-like values the grid beats the uniform 16 levels at the same bytes.
    func testNL4SearchNeverWorseThanPlainAndBeatsUniform() throws {
        let cols = 256, w = gaussian(64 * cols, seed: 7)
        let deq = try decode(try quantize(w, cols: cols, .nl4g32), rows: 64, cols: cols, .nl4g32)
        for g0 in stride(from: 0, to: w.count, by: 32) {
            let stored = weightedError(w, deq, nil, cols: cols, range: g0..<(g0 + 32))
            XCTAssertLessThanOrEqual(stored, plainError(w[g0..<(g0 + 32)], grid: Self.nl4Grid, imp: nil) * (1 + 1e-6), "group \(g0)")
        }
        let q4 = try decode(try quantize(w, cols: cols, .q4g32), rows: 64, cols: cols, .q4g32)
        XCTAssertLessThan(weightedError(w, deq, nil, cols: cols, range: 0..<w.count),
                          weightedError(w, q4, nil, cols: cols, range: 0..<w.count))
    }

    /// With an importance per column, every group's weighted error (16-level int4) is at most
    /// the plain rule's, and in total below it.
    func testImportanceWeightedSearch() throws {
        let cols = 128, rows = 32, w = gaussian(rows * cols, seed: 8)
        var rng = TestRandom(seed: 9)
        let imp = (0..<cols).map { c in (c % 13 == 0 ? 50 : 1) * (rng.next() + 0.01) }
        let impRows = (0..<(rows * cols)).map { imp[$0 % cols] }
        for f in [WeightFormat.q4g32, .q4g64, .q4g128] {
            let grid = Self.q4Grid, g = f.groupSize!
            let weighted = try decode(try quantize(w, cols: cols, f, importance: imp), rows: rows, cols: cols, f)
            let plain = try decode(try quantize(w, cols: cols, f), rows: rows, cols: cols, f)
            for g0 in stride(from: 0, to: w.count, by: g) {
                let e = weightedError(w, weighted, imp, cols: cols, range: g0..<(g0 + g))
                XCTAssertLessThanOrEqual(e, plainError(w[g0..<(g0 + g)], grid: grid, imp: impRows[g0..<(g0 + g)]) * (1 + 1e-6), "\(f) group \(g0)")
            }
            XCTAssertLessThan(weightedError(w, weighted, imp, cols: cols, range: 0..<w.count),
                              weightedError(w, plain, imp, cols: cols, range: 0..<w.count), "\(f)")
        }
    }

    /// No importance anywhere (an expert no calibration token reached) is the unweighted rule;
    /// formats other than the 16-level int4 ones ignore importance.
    func testZeroImportanceAndFormatsWithoutSearch() throws {
        let cols = 128, w = gaussian(4 * cols, seed: 10)
        let zero = [Float](repeating: 0, count: cols), some = (0..<cols).map { Float($0 % 7) }
        for f in WeightFormat.allCases where f.rowBytes(cols: cols) != nil {
            XCTAssertEqual(try quantize(w, cols: cols, f, importance: zero), try quantize(w, cols: cols, f), "\(f)")
        }
        for f in [WeightFormat.int8, .int4g64, .int4g32a, .bf16, .nl4g32, .q3g32, .q3g64, .q2g32, .q2g64] {
            XCTAssertEqual(try quantize(w, cols: cols, f, importance: some), try quantize(w, cols: cols, f), "\(f)")
        }
        XCTAssertThrowsError(try quantize(w, cols: cols, .q4g32, importance: [1, 2])) {
            XCTAssertEqual(($0 as? QuantError)?.kind, .sizeMismatch)
        }
    }
}

extension TestRandom {
    /// `weights(n)` of a fresh copy (for a value-type generator in a `let`).
    func weightsCopy(_ n: Int) -> [Float] {
        var copy = self
        return copy.weights(n)
    }
}
