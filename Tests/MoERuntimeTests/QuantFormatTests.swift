import MoEFormat
import MoEKernels
import XCTest
@testable import MoERuntime

final class QuantFormatTests: XCTestCase {
    func testByteCounts() throws {
        XCTAssertEqual(try WeightFormat.f32.byteCount(rows: 3, cols: 5), 60)
        XCTAssertEqual(try WeightFormat.bf16.byteCount(rows: 3, cols: 5), 30)
        XCTAssertEqual(try WeightFormat.int8.byteCount(rows: 3, cols: 5), 3 * (4 + 5))
        XCTAssertEqual(try WeightFormat.int4g32.byteCount(rows: 2, cols: 64), 2 * 2 * (2 + 16))
        XCTAssertEqual(try WeightFormat.int4g64.byteCount(rows: 2, cols: 128), 2 * 2 * (2 + 32))
        XCTAssertEqual(try WeightFormat.int4g128.byteCount(rows: 1, cols: 256), 2 * (2 + 64))
        XCTAssertEqual(try WeightFormat.int4g32a.byteCount(rows: 1, cols: 64), 2 * (4 + 16))
        XCTAssertEqual(try WeightFormat.int4g128a.byteCount(rows: 4, cols: 128), 4 * (4 + 64))
        XCTAssertEqual(WeightFormat(id: WeightFormat.int4g64a.id), .int4g64a)
        XCTAssertNil(WeightFormat(id: 99))
    }

    func testInt4RejectsColsNotMultipleOfGroup() {
        XCTAssertThrowsError(try WeightFormat.int4g64.byteCount(rows: 2, cols: 96)) { error in
            XCTAssertEqual((error as? QuantError)?.kind, .badShape)
        }
        let w = [Float](repeating: 0.5, count: 2 * 96)
        XCTAssertThrowsError(try QuantizedMatrix(quantizing: w, rows: 2, cols: 96, format: .int4g64a))
        XCTAssertNoThrow(try QuantizedMatrix(quantizing: w, rows: 2, cols: 96, format: .int4g32))
    }

    func testF16ConversionMatchesFloat16() {
        var rng = TestRandom(seed: 7)
        var values: [Float] = [0, -0.0, 1, 65504, 65519, 65520, 1e-8, 6e-8, 3e-8, 2.98e-8, 6.1e-5, -2.5, .infinity]
        for _ in 0..<20000 { values.append((rng.next() - 0.5) * Float(sign: .plus, exponent: Int(rng.next() * 44) - 26, significand: 1)) }
        for v in values {
            XCTAssertEqual(moe_f32_to_f16(v), Float16(v).bitPattern, "f16 of \(v)")
            let h = Float16(v)
            XCTAssertEqual(moe_f16_to_f32(h.bitPattern), Float(h))
        }
    }

    /// Hand-built int4 rows pin the byte layout: header, then byte i holds
    /// element i in the low nibble and element i + 16 in the high nibble.
    func testInt4SymmetricLayout() throws {
        let w = (0..<32).map { Float($0 % 15) - 7 }  // -7...7, so the scale is exactly 1
        let bytes = try w.withUnsafeBufferPointer { try QuantizedMatrix.quantize($0, rows: 1, cols: 32, format: .int4g32) }
        XCTAssertEqual(bytes.count, 18)
        XCTAssertEqual(Array(bytes[0..<2]), [0x00, 0x3C])  // f16 1.0
        for i in 0..<16 {
            let lo = UInt8(Int(w[i]) + 8), hi = UInt8(Int(w[i + 16]) + 8)
            XCTAssertEqual(bytes[2 + i], lo | hi << 4, "byte \(i)")
        }
        let q = try QuantizedMatrix(copying: bytes, rows: 1, cols: 32, format: .int4g32)
        XCTAssertEqual(q.dequantize(), w)
    }

    func testInt4AsymmetricLayout() throws {
        let w = (0..<64).map { Float($0 % 16) * 0.5 + 1 }  // min 1, scale 0.5, q = index % 16
        let bytes = try w.withUnsafeBufferPointer { try QuantizedMatrix.quantize($0, rows: 1, cols: 64, format: .int4g64a) }
        XCTAssertEqual(bytes.count, 4 + 32)
        XCTAssertEqual(Array(bytes[0..<4]), [0x00, 0x38, 0x00, 0x3C])  // scale 0.5, min 1.0
        for k in 0..<2 {
            for i in 0..<16 {
                let lo = UInt8((32 * k + i) % 16), hi = UInt8((32 * k + 16 + i) % 16)
                XCTAssertEqual(bytes[4 + 16 * k + i], lo | hi << 4)
            }
        }
        let q = try QuantizedMatrix(copying: bytes, rows: 1, cols: 64, format: .int4g64a)
        XCTAssertEqual(q.dequantize(), w)
    }

    func testInt8Layout() throws {
        let w: [Float] = [1.27, -0.64, 0, 0.01]
        let q = try QuantizedMatrix(quantizing: w, rows: 1, cols: 4, format: .int8)
        XCTAssertEqual(QuantTest.f32(q.bytes, at: 0), Float(1.27) / 127)
        XCTAssertEqual(Array(q.bytes[4..<8]).map { Int8(bitPattern: $0) }, [127, -64, 0, 1])
    }

    /// Round to nearest: every decoded element is within half a step of the input.
    func testRoundTripErrorBound() throws {
        var rng = TestRandom(seed: 1)
        for f in QuantTest.intFormats {
            let rows = 7, cols = QuantTest.oddCols(for: f)
            let w = rng.weights(rows * cols)
            let q = try QuantizedMatrix(quantizing: w, rows: rows, cols: cols, format: f)
            let deq = q.dequantize()
            let steps = try QuantTest.elementScales(q)
            for i in 0..<w.count {
                XCTAssertLessThanOrEqual(abs(w[i] - deq[i]), steps[i] / 2 * (1 + 1e-5) + 1e-12, "\(f) element \(i)")
            }
            // The stored scale is the smallest that covers the range (up to f16 rounding).
            if let g = f.groupSize {
                for start in stride(from: 0, to: w.count, by: g) {
                    let v = w[start..<start + g]
                    let need = f.isAsymmetric ? (v.max()! - v.min()!) / 15 : v.map(abs).max()! / 7
                    XCTAssertGreaterThanOrEqual(steps[start], need * (1 - 1e-6), "\(f) group at \(start)")
                    XCTAssertLessThanOrEqual(steps[start], need * (1 + 2.0 / 1024) + 1e-7, "\(f) group at \(start)")
                }
            }
        }
    }

    func testBF16RoundsToNearestEven() throws {
        var rng = TestRandom(seed: 2)
        let w = rng.weights(333) + [1.00390625, 1.01171875, -3e38]  // two exact ties, one large value
        let q = try QuantizedMatrix(quantizing: w, rows: 1, cols: w.count, format: .bf16)
        let deq = q.dequantize()
        for (a, b) in zip(w, deq) { XCTAssertLessThanOrEqual(abs(a - b), abs(a) / 256) }
        XCTAssertEqual(deq[333], 1.0)        // tie, rounds to even mantissa
        XCTAssertEqual(deq[334], 1.015625)   // tie, rounds up to even
        XCTAssertEqual(try QuantizedMatrix(quantizing: w, rows: 1, cols: w.count, format: .f32).dequantize(), w)
    }

    func testAllZeroAndConstantRows() throws {
        for f in WeightFormat.allCases {
            let cols = QuantTest.oddCols(for: f)
            let w = [Float](repeating: 0, count: cols) + [Float](repeating: -0.3, count: cols)
            let q = try QuantizedMatrix(quantizing: w, rows: 2, cols: cols, format: f)
            let deq = q.dequantize()
            XCTAssertEqual(Array(deq[0..<cols]), [Float](repeating: 0, count: cols), "\(f)")
            for v in deq[cols...] { XCTAssertEqual(v, -0.3, accuracy: 0.3 / 200, "\(f)") }
            let y = q.matvec([Float](repeating: 1, count: cols))
            XCTAssertEqual(y[0], 0, "\(f)")
            XCTAssertEqual(y[1], -0.3 * Float(cols), accuracy: 0.3 * Float(cols) / 100, "\(f)")
        }
    }

    func testNonFiniteWeightsAreRejectedWithRow() {
        for f in WeightFormat.allCases {
            let cols = QuantTest.oddCols(for: f)
            for bad in [Float.nan, .infinity, -.infinity] {
                var w = [Float](repeating: 0.1, count: 4 * cols)
                w[2 * cols + 5] = bad
                XCTAssertThrowsError(try QuantizedMatrix(quantizing: w, rows: 4, cols: cols, format: f)) { error in
                    let e = error as? QuantError
                    XCTAssertEqual(e?.kind, .nonFinite, "\(f)")
                    XCTAssertTrue(e?.message.contains("row 2") ?? false, e?.message ?? "")
                }
            }
        }
    }

    func testMagnitudesBeyondScaleRangeAreRejected() {
        XCTAssertThrowsError(try QuantizedMatrix(quantizing: [Float](repeating: 1e6, count: 32), rows: 1, cols: 32,
                                                 format: .int4g32)) { XCTAssertEqual(($0 as? QuantError)?.kind, .outOfRange) }
        XCTAssertThrowsError(try QuantizedMatrix(quantizing: [Float](repeating: -7e4, count: 32), rows: 1, cols: 32,
                                                 format: .int4g32a)) { XCTAssertEqual(($0 as? QuantError)?.kind, .outOfRange) }
        XCTAssertThrowsError(try QuantizedMatrix(quantizing: [Float.greatestFiniteMagnitude], rows: 1, cols: 1,
                                                 format: .bf16)) { XCTAssertEqual(($0 as? QuantError)?.kind, .outOfRange) }
        XCTAssertNoThrow(try QuantizedMatrix(quantizing: [Float](repeating: 1e6, count: 32), rows: 1, cols: 32, format: .int8))
    }

    func testBorrowedBuffersAreChecked() throws {
        let bytes = [UInt8](repeating: 0, count: 41)
        try bytes.withUnsafeBytes { raw in
            XCTAssertThrowsError(try QuantizedMatrix(bytes: UnsafeRawBufferPointer(rebasing: raw[0..<40]), rows: 2, cols: 6,
                                                     format: .f32, owner: nil)) { XCTAssertEqual(($0 as? QuantError)?.kind, .sizeMismatch) }
            let aligned = Int(bitPattern: raw.baseAddress!) % 4 == 0 ? 1 : 0
            let slice = UnsafeRawBufferPointer(rebasing: raw[aligned..<(aligned + 40)])
            XCTAssertThrowsError(try QuantizedMatrix(bytes: slice, rows: 2, cols: 5, format: .f32, owner: nil)) {
                XCTAssertEqual(($0 as? QuantError)?.kind, .misaligned)
            }
            XCTAssertNoThrow(try QuantizedMatrix(bytes: slice, rows: 2, cols: 16, format: .int8, owner: nil))
        }
        XCTAssertThrowsError(try QuantizedMatrix(quantizing: [1, 2, 3], rows: 2, cols: 2, format: .f32))
    }
}
