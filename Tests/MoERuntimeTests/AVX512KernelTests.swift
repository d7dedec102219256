import MoEFormat
import MoEKernels
import XCTest
@testable import MoERuntime

/// The AVX-512 path against the portable path and the AVX2 path, at the widths and token counts
/// that take each of its code paths. (QuantKernelTests runs every available path too; these are
/// the widths specific to the AVX-512 kernels.) Skipped on a CPU without AVX-512 VNNI.
final class AVX512KernelTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(KernelPath.avx512.isAvailable, "this CPU has no AVX-512 F/BW/VL/VNNI")
    }

    func product(_ q: QuantizedMatrix, _ x: [Float], tokens: Int, path: KernelPath) throws -> [Float] {
        var y = [Float](repeating: .nan, count: tokens * q.rows)
        try x.withUnsafeBufferPointer { xp in
            try y.withUnsafeMutableBufferPointer { try q.matmul(x: xp, tokens: tokens, y: $0, path: path, threaded: false) }
        }
        return y
    }

    /// Every grouped format (int4/q4 at every group size, symmetric and not, nl4, q3, q2) runs the
    /// shared tiles (tile_grouped.h) on both paths: the AVX2 path's integer sums and the same
    /// float operations in the same order, so the same bits. Widths: one group (g32 rows of 32 or
    /// 96 columns take the row kernels), sub-block counts of 1 to 3 past a multiple of 4 (the
    /// tiles' last step), and 1024; 1 to 9 tokens (every tile width and a second 8-token block).
    func testInt4AndGridFormatsGiveTheAVX2Bits() throws {
        let formats = WeightFormat.allCases.filter { $0 != .int8 && !$0.isFloat }
        for (n, f) in formats.enumerated() {
            let g = f.groupSize ?? 32
            for cols in Set([g, 3 * g, 5 * 64, 6 * 64, 7 * 64, 17 * 64, 1024].filter { $0 % g == 0 }) {
                var rng = TestRandom(seed: UInt64(500 + 17 * n + cols))
                let rows = 13
                let q = try QuantizedMatrix(quantizing: rng.weights(rows * cols), rows: rows, cols: cols, format: f)
                for tokens in [1, 2, 4, 5, 9] {
                    let x = rng.weights(tokens * cols, scale: 2)
                    let wide = try product(q, x, tokens: tokens, path: .avx512)
                    XCTAssertEqual(wide, try product(q, x, tokens: tokens, path: .avx2), "\(f) cols \(cols) tokens \(tokens)")
                }
            }
        }
    }

    /// int8 rows take 64 columns a step and masked loads for a block's last 16, 32 or 48; every
    /// width here is a multiple of 16 (others take the row kernel shared with AVX2). Against the
    /// portable path within the float-order bound, and every (row, token) of a product of 1 to 17
    /// tokens equal to the row's matvec on the same path.
    func testInt8MatchesPortableAtEveryTail() throws {
        for cols in [16, 32, 48, 80, 112, 1024, 1040, 1056, 1072, 2064] {
            var rng = TestRandom(seed: UInt64(700 + cols))
            let rows = 11
            let q = try QuantizedMatrix(quantizing: rng.weights(rows * cols), rows: rows, cols: cols, format: .int8)
            let deq = q.dequantize()
            for tokens in [1, 3, 8, 9, 17] {
                let x = rng.weights(tokens * cols, scale: 2)
                let wide = try product(q, x, tokens: tokens, path: .avx512)
                let scalar = try product(q, x, tokens: tokens, path: .scalar)
                for t in 0..<tokens {
                    let xt = Array(x[(t * cols)..<((t + 1) * cols)])
                    let alone = try product(q, xt, tokens: 1, path: .avx512)
                    XCTAssertEqual(Array(wide[(t * rows)..<((t + 1) * rows)]), alone, "cols \(cols) token \(t) of \(tokens)")
                    for r in 0..<rows {
                        var mag: Float = 0
                        for i in 0..<cols { mag += abs(deq[r * cols + i] * xt[i]) }
                        XCTAssertEqual(wide[t * rows + r], scalar[t * rows + r], accuracy: mag * 2e-6 + 1e-7,
                                       "cols \(cols) token \(t) row \(r)")
                    }
                }
            }
        }
    }

    /// The path is chosen when the CPU has it; the AVX2 path stays available to choose.
    func testAVX512IsTheDefaultUnlessOverridden() throws {
        XCTAssertTrue(KernelPath.avx2.isAvailable)
        XCTAssertEqual(KernelPath.avx512.name, "avx512")
        let env = ProcessInfo.processInfo.environment["MOEPACK_KERNELS"]
        if env == nil { XCTAssertEqual(KernelConfig.path, .avx512) }
        if env == "avx2" { XCTAssertEqual(KernelConfig.path, .avx2) }
    }
}
