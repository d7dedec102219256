import MoEFormat
import MoEKernels
import XCTest
@testable import MoERuntime

/// The 3- and 2-bit formats (q3g32, q3g64, q2g32, q2g64): the byte layout docs/quantization.md
/// specifies, read here independently of the kernels; the scale search against the plain rule;
/// the rounding bound; and the error each format gives. Every kernel path is tested against the
/// portable one in QuantKernelTests and AVX512KernelTests, which run every format.
final class LowBitFormatTests: XCTestCase {
    static let formats: [WeightFormat] = [.q3g32, .q3g64, .q2g32, .q2g64]

    func gaussian(_ n: Int, seed: UInt64) -> [Float] {
        var rng = TestRandom(seed: seed)
        return (0..<n).map { i in
            let v = (rng.next() + rng.next() + rng.next() + rng.next() - 2) * 0.05
            return i % 61 == 7 ? v * 5 : v
        }
    }

    func quantize(_ w: [Float], cols: Int, _ f: WeightFormat) throws -> [UInt8] {
        try w.withUnsafeBufferPointer { try QuantizedMatrix.quantize($0, rows: w.count / cols, cols: cols, format: f) }
    }

    /// Scale and code of weight c of one stored row, by the documented layout: per group an f16
    /// scale, then per 32 weights 8 bytes holding weight 8k + i in bits 2k, 2k+1 of byte i and,
    /// for 3 bits, a little-endian 32-bit word whose bit j is the high bit of weight j.
    func read(_ row: ArraySlice<UInt8>, _ f: WeightFormat, column c: Int) -> (scale: Float, code: Int) {
        let bits = Int(f.traits.bits), g = f.groupSize!, base = row.startIndex + (c / g) * (2 + g * bits / 8)
        let scale = moe_f16_to_f32(UInt16(row[base]) | UInt16(row[base + 1]) << 8)
        let blk = base + 2 + ((c % g) / 32) * 4 * bits, j = c % 32
        var code = Int(row[blk + j % 8] >> (2 * (j / 8))) & 3
        if bits == 3 {
            let word = (0..<4).reduce(UInt32(0)) { $0 | UInt32(row[blk + 8 + $1]) << (8 * $1) }
            code |= Int((word >> j) & 1) << 2
        }
        return (scale, code)
    }

    func testDecodesByTheDocumentedLayout() throws {
        for f in Self.formats {
            let cols = 3 * f.groupSize!, rows = 5, mid = 1 << (Int(f.traits.bits) - 1)
            let w = gaussian(rows * cols, seed: 21)
            let bytes = try quantize(w, cols: cols, f)
            let rb = f.rowBytes(cols: cols)!
            XCTAssertEqual(bytes.count, rows * rb)
            XCTAssertEqual(rb, 3 * (2 + f.groupSize! * Int(f.traits.bits) / 8))
            let deq = try QuantizedMatrix(copying: bytes, rows: rows, cols: cols, format: f).dequantize()
            for i in 0..<w.count {
                let (s, c) = read(bytes[(i / cols * rb)..<((i / cols + 1) * rb)], f, column: i % cols)
                XCTAssertLessThan(c, 2 * mid)
                XCTAssertEqual(deq[i], s * Float(c - mid), "\(f) \(i)")
            }
        }
    }

    /// The plain rule written out: the weight of largest magnitude maps onto -m (the grid's first
    /// value), nearest codes. The search includes it, so no group's error is larger.
    func testSearchNeverWorseThanThePlainRule() throws {
        for f in Self.formats {
            let g = f.groupSize!, cols = 4 * g, mid = 1 << (Int(f.traits.bits) - 1)
            let grid = (0..<(2 * mid)).map { Float($0 - mid) }
            let w = gaussian(16 * cols, seed: 22)
            let deq = try QuantizedMatrix(copying: try quantize(w, cols: cols, f), rows: 16, cols: cols, format: f).dequantize()
            var better = 0
            for g0 in stride(from: 0, to: w.count, by: g) {
                let v = w[g0..<(g0 + g)]
                let extreme = v.max { abs($0) < abs($1) }!
                let d = moe_f16_to_f32(moe_f32_to_f16(extreme / grid[0]))
                let plain = v.reduce(0.0) { acc, x in
                    let e = grid.map { Double(x) - Double(d) * Double($0) }.min { abs($0) < abs($1) }!
                    return acc + e * e
                }
                let stored = (g0..<(g0 + g)).reduce(0.0) { $0 + Double(w[$1] - deq[$1]) * Double(w[$1] - deq[$1]) }
                XCTAssertLessThanOrEqual(stored, plain * (1 + 1e-6), "\(f) group \(g0)")
                if stored < plain * 0.999 { better += 1 }
            }
            XCTAssertGreaterThan(better, w.count / g / 2, "\(f): the search improves most groups")
        }
    }

    /// Half a step wherever the value lies inside the grid's span (-m - 1/2 .. m - 1/2 steps).
    func testRoundingBoundInsideTheSpan() throws {
        for f in Self.formats {
            let cols = 2 * f.groupSize!, rows = 9, mid = Float(1 << (Int(f.traits.bits) - 1))
            let w = TestRandom(seed: 23).weightsCopy(rows * cols)
            let bytes = try quantize(w, cols: cols, f)
            let deq = try QuantizedMatrix(copying: bytes, rows: rows, cols: cols, format: f).dequantize()
            let rb = f.rowBytes(cols: cols)!
            var inside = 0
            for i in 0..<w.count {
                let s = read(bytes[(i / cols * rb)..<((i / cols + 1) * rb)], f, column: i % cols).scale
                let t = w[i] / s
                guard t >= -mid - 0.5 && t <= mid - 0.5 else { continue }
                XCTAssertLessThanOrEqual(abs(w[i] - deq[i]), abs(s) / 2 * (1 + 1e-5), "\(f) \(i)")
                inside += 1
            }
            XCTAssertGreaterThan(inside, w.count * 9 / 10)
        }
    }

    /// Relative squared error on near-Gaussian values (no outliers): each bit fewer costs about
    /// 4x, a larger group a little (docs/quantization.md gives the figures on the built-in model).
    func testErrorPerFormat() throws {
        var rng = TestRandom(seed: 24)
        let cols = 256, rows = 64, w = (0..<(rows * cols)).map { _ in (rng.next() + rng.next() + rng.next() + rng.next() - 2) * 0.05 }
        let energy = w.reduce(0.0) { $0 + Double($1) * Double($1) }
        var rel: [WeightFormat: Double] = [:]
        for f in [WeightFormat.q4g32] + Self.formats {
            let deq = try QuantizedMatrix(copying: try quantize(w, cols: cols, f), rows: rows, cols: cols, format: f).dequantize()
            rel[f] = zip(w, deq).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) } / energy
        }
        XCTAssertLessThan(rel[.q4g32]!, rel[.q3g32]!)
        XCTAssertLessThan(rel[.q3g32]!, rel[.q3g64]!)
        XCTAssertLessThan(rel[.q3g64]!, rel[.q2g32]!)
        XCTAssertLessThan(rel[.q2g32]!, rel[.q2g64]!)
        XCTAssertLessThan(rel[.q3g32]!, 0.03)
        XCTAssertLessThan(rel[.q2g32]!, 0.12)
    }

    func testShapesAndBytes() throws {
        XCTAssertEqual(WeightFormat.q3g32.bitsPerWeight(cols: 64), 3.5)
        XCTAssertEqual(WeightFormat.q3g64.bitsPerWeight(cols: 64), 3.25)
        XCTAssertEqual(WeightFormat.q2g32.bitsPerWeight(cols: 64), 2.5)
        XCTAssertEqual(WeightFormat.q2g64.bitsPerWeight(cols: 64), 2.25)
        XCTAssertNil(WeightFormat.q3g64.rowBytes(cols: 96))
        XCTAssertThrowsError(try quantize([Float](repeating: 0.1, count: 96), cols: 96, .q2g64))
        // an all-zero group decodes to zeros
        let zeros = try QuantizedMatrix(copying: try quantize([Float](repeating: 0, count: 64), cols: 64, .q3g32),
                                        rows: 1, cols: 64, format: .q3g32).dequantize()
        XCTAssertEqual(zeros, [Float](repeating: 0, count: 64))
    }
}
