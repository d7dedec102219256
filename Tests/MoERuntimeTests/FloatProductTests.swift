import MoEFormat
import MoEKernels
import MoETestSupport
import XCTest
@testable import MoERuntime

/// Stored float weights (f32, bf16, f16) multiplied in place: the widened-block sgemm path of
/// several rows and the kernels' dot products of one row must both give the f32 product of the
/// stored values, as a DenseMatrix of the widened weights computes it.
final class FloatProductTests: XCTestCase {
    func stored(_ f: WeightFormat, rows: Int, cols: Int, seed: UInt64) throws -> (StoredMatrix, [Float]) {
        var rng = TestRandom(seed: seed)
        let q = try QuantizedMatrix(quantizing: rng.weights(rows * cols), rows: rows, cols: cols, format: f)
        let copy = OwnedBytes(count: q.bytes.count)
        copy.pointer.copyMemory(from: q.bytes.baseAddress!, byteCount: q.bytes.count)
        let m = try StoredMatrix(format: f, rows: rows, cols: cols, buffer: copy.buffer, owner: copy, fileMapped: false)
        return (m, q.dequantize())
    }

    func testStoredFloatsMatchTheF32Product() throws {
        let before = KernelConfig.threads
        defer { KernelConfig.setThreads(before) }
        KernelConfig.setThreads(2)
        // 300 rows take sgemm for several tokens (more than FloatProduct.kernelRows), 40 the
        // kernels; 1100 rows of 333 columns span several widened blocks per slice.
        for (n, f) in [WeightFormat.f32, .bf16, .f16].enumerated() {
            for (rows, cols) in [(300, 333), (40, 64), (1100, 333)] {
                let (m, widened) = try stored(f, rows: rows, cols: cols, seed: UInt64(300 + n))
                let dense = DenseMatrix(rows: rows, cols: cols, values: widened)
                for tokens in [1, 2, 17] {
                    var rng = TestRandom(seed: UInt64(tokens))
                    let x = rng.weights(tokens * cols, scale: 2)
                    var got = [Float](repeating: .nan, count: tokens * rows), want = got
                    x.withUnsafeBufferPointer { xp in
                        got.withUnsafeMutableBufferPointer { m.multiply(xp.baseAddress!, count: tokens, into: $0.baseAddress!) }
                        want.withUnsafeMutableBufferPointer { dense.multiply(xp.baseAddress!, count: tokens, into: $0.baseAddress!) }
                    }
                    let scale = want.reduce(0) { max($0, abs($1)) }
                    let diff = zip(got, want).reduce(0) { max($0, abs($1.0 - $1.1)) }
                    XCTAssertLessThanOrEqual(diff, scale * 1e-6, "\(f) \(rows)x\(cols) tokens \(tokens)")
                }
                var row = [Float](repeating: 0, count: cols)
                row.withUnsafeMutableBufferPointer { m.copyRow(rows - 1, into: $0.baseAddress!) }
                XCTAssertEqual(row, Array(widened[((rows - 1) * cols)...]), "\(f) copyRow")
            }
        }
    }

    /// Releasing pages drops a checkpoint's mapped pages, which are read again from the file,
    /// and leaves owned bytes alone (dropping those would zero them).
    func testReleasedPagesReadTheSameValues() throws {
        let weights = try CheckpointWeights(checkpoint: Checkpoint(directory: Fixtures.checkpoint("moe_noshared_interval2")))
        let mapped = try weights.matrix("model.layers.1.mlp.experts.0.up_proj.weight", rows: 16, cols: 32)
        let (owned, _) = try stored(.bf16, rows: 8, cols: 64, seed: 9)
        for m in [mapped, owned] {
            var before = [Float](repeating: 0, count: m.cols), after = before
            before.withUnsafeMutableBufferPointer { m.copyRow(m.rows - 1, into: $0.baseAddress!) }
            m.releasePages()
            after.withUnsafeMutableBufferPointer { m.copyRow(m.rows - 1, into: $0.baseAddress!) }
            XCTAssertEqual(before, after)
            XCTAssertTrue(before.contains { $0 != 0 })
        }
    }

    func testWidenIsExact() {
        // Every f16 bit pattern, and bf16 patterns across the exponent range, widen as the
        // portable conversions do, on the default path.
        let f16 = (0...UInt16.max).map { $0 }
        var out = [Float](repeating: 0, count: f16.count)
        XCTAssertEqual(moe_widen(Int32(MOE_FMT_F16), f16, Int64(f16.count), &out), Int32(MOE_OK))
        for (h, v) in zip(f16, out) {
            let want = moe_f16_to_f32(h)
            XCTAssertTrue(v.bitPattern == want.bitPattern || (v.isNaN && want.isNaN), "f16 \(h)")
        }
        XCTAssertEqual(moe_widen(Int32(MOE_FMT_BF16), f16, Int64(f16.count), &out), Int32(MOE_OK))
        for (h, v) in zip(f16, out) { XCTAssertEqual(v.bitPattern, UInt32(h) << 16, "bf16 \(h)") }
        XCTAssertEqual(moe_widen(Int32(MOE_FMT_INT8), f16, 1, &out), Int32(MOE_ERR_FORMAT))
    }
}
