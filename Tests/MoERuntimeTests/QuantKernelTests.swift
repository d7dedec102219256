import MoEFormat
import MoEKernels
import XCTest
@testable import MoERuntime

final class QuantKernelTests: XCTestCase {
    static let paths = KernelPath.allCases.filter(\.isAvailable)

    struct Case {
        let q: QuantizedMatrix
        let x: [Float]
        let tokens: Int
        let deq: [Float]
    }

    func makeCase(_ f: WeightFormat, rows: Int, cols: Int, tokens: Int, seed: UInt64) throws -> Case {
        var rng = TestRandom(seed: seed)
        let q = try QuantizedMatrix(quantizing: rng.weights(rows * cols), rows: rows, cols: cols, format: f)
        return Case(q: q, x: rng.weights(tokens * cols, scale: 2), tokens: tokens, deq: q.dequantize())
    }

    func run(_ c: Case, path: KernelPath, threaded: Bool) throws -> [Float] {
        var y = [Float](repeating: .nan, count: c.tokens * c.q.rows)
        try c.x.withUnsafeBufferPointer { xp in
            try y.withUnsafeMutableBufferPointer {
                try c.q.matmul(x: xp, tokens: c.tokens, y: $0, path: path, threaded: threaded)
            }
        }
        return y
    }

    /// Error allowed for y[t, r] against the exact product with decoded weights:
    /// the activation rounding (|x - xq d| <= d/2 per element, d = block max / 127 for
    /// int4 weights, block max / 32767 for int8 weights)
    /// times |w|, plus f32 accumulation error.
    func bound(_ c: Case, t: Int, r: Int, steps: [Float]) -> Float {
        let cols = c.q.cols
        var act: Float = 0, mag: Float = 0
        for i in 0..<cols {
            let w = abs(c.deq[r * cols + i])
            mag += w * abs(c.x[t * cols + i])
            act += w * (c.q.format.isFloat ? 0 : steps[t * cols + i] / 2)
        }
        return act * 1.0001 + mag * 1e-5 + 1e-6
    }

    func testMatmulMatchesDecodedReferenceOnEveryPath() throws {
        for (n, f) in WeightFormat.allCases.enumerated() {
            let c = try makeCase(f, rows: 19, cols: QuantTest.oddCols(for: f), tokens: 3, seed: UInt64(10 + n))
            let ref = c.q.referenceMatmul(c.x, tokens: c.tokens)
            let steps = QuantTest.activationSteps(c.x, cols: c.q.cols, format: f)
            for path in Self.paths {
                let y = try run(c, path: path, threaded: false)
                for t in 0..<c.tokens {
                    for r in 0..<c.q.rows {
                        let i = t * c.q.rows + r
                        XCTAssertLessThanOrEqual(abs(y[i] - ref[i]), bound(c, t: t, r: r, steps: steps), "\(f) \(path.name) t\(t) r\(r)")
                    }
                }
            }
        }
    }

    /// SIMD paths compute the same integer sums as the scalar path; only the
    /// float accumulation order differs.
    func testSIMDPathsAgreeWithScalar() throws {
        for (n, f) in WeightFormat.allCases.enumerated() {
            // int8: 64, 320 and 333 columns are one partial 1024-value activation block, 1088, 1040
            // and 1100 a whole block and a partial one; 80, 160 and 1040 (multiples of 16, not of
            // 64) take the tiles' 16-column steps, 333 and 1100 (not multiples of 16) the rows'
            // scalar remainders
            for cols in Set([QuantTest.oddCols(for: f), f.groupSize ?? 64, 1024]
                                + (f == .int8 ? [320, 80, 160, 1088, 1040, 1100] : [])) {
                let c = try makeCase(f, rows: 13, cols: cols, tokens: 5, seed: UInt64(100 + n))
                let scalar = try run(c, path: .scalar, threaded: false)
                for path in Self.paths where path != .scalar {
                    let y = try run(c, path: path, threaded: false)
                    for t in 0..<c.tokens {
                        for r in 0..<c.q.rows {
                            var mag: Float = 0
                            for i in 0..<cols { mag += abs(c.deq[r * cols + i] * c.x[t * cols + i]) }
                            let i = t * c.q.rows + r
                            XCTAssertEqual(y[i], scalar[i], accuracy: mag * 2e-6 + 1e-7, "\(f) \(path.name) cols \(cols)")
                        }
                    }
                }
            }
        }
    }

    func testMatmulRowsEqualMatvec() throws {
        // 1024 columns take the SIMD tiles: one row at a time for matvec; for matmul, int4 runs
        // one row x 1-4 tokens, and int8 blocks of 5 to 8 tokens a row at a time (5, 7, 8 and
        // 13 = 8 + 5 tokens), a block of 4 as 2 x 4 tiles with the 11th row as 1 x 4 (4 and
        // 12 = 8 + 4), fewer as single rows and tokens (3). 320 int8 columns are one partial
        // activation block and 1088 a whole one and a partial one; 160 (the tiny model's hidden
        // size) is a multiple of 16, not of 64.
        // Every (row, token) must come out the same.
        for (n, f) in WeightFormat.allCases.enumerated() {
            for cols in [QuantTest.oddCols(for: f), 1024] + (f == .int8 ? [320, 160, 1088] : []) {
                for tokens in [3, 4, 5, 7, 8, 12, 13] {
                    try checkRowsEqualMatvec(f, cols: cols, tokens: tokens, seed: UInt64(200 + 10 * n + tokens))
                }
            }
        }
    }

    func checkRowsEqualMatvec(_ f: WeightFormat, cols: Int, tokens: Int, seed: UInt64) throws {
        let c = try makeCase(f, rows: 11, cols: cols, tokens: tokens, seed: seed)
        let all = c.q.matmul(c.x, tokens: c.tokens)
        for t in 0..<c.tokens {
            let y = c.q.matvec(Array(c.x[(t * c.q.cols)..<((t + 1) * c.q.cols)]))
            XCTAssertEqual(Array(all[(t * c.q.rows)..<((t + 1) * c.q.rows)]), y, "\(f) cols \(cols) token \(t) of \(tokens)")
        }
    }

    func testThreadedResultsAreIdentical() throws {
        let before = KernelConfig.threads
        defer { KernelConfig.setThreads(before) }
        XCTAssertEqual(KernelConfig.setThreads(2), 2)
        XCTAssertEqual(KernelConfig.threads, 2)
        for (n, f) in WeightFormat.allCases.enumerated() {
            // 303 rows: the second thread starts at an odd row, so row pairing differs from single-threaded.
            let c = try makeCase(f, rows: 303, cols: 256, tokens: 2, seed: UInt64(300 + n))
            for path in Self.paths {
                let single = try run(c, path: path, threaded: false)
                let threaded = try run(c, path: path, threaded: true)
                XCTAssertEqual(single, threaded, "\(f) \(path.name)")
            }
        }
        // Resizing the pool repeatedly keeps working.
        for k in [1, 3, 2] { XCTAssertEqual(KernelConfig.setThreads(k), k) }
        let c = try makeCase(.int4g32, rows: 300, cols: 512, tokens: 1, seed: 9)
        XCTAssertEqual(c.q.matvec(c.x), try run(c, path: KernelConfig.path, threaded: false))
    }

    /// The SIMD activation quantizers give the portable quantizer's codes. With an identity int8
    /// matrix every output is one code times its block's scale, whatever the order of the sums,
    /// so the paths must agree exactly. Widths cover one partial block, whole blocks and a whole
    /// block plus a partial one (every multiple of 16 takes the SIMD quantizer); each 1024-value
    /// block gets its own magnitude.
    func testSIMDActivationCodesEqualPortableOnes() throws {
        for cols in [16, 80, 160, 512, 1024, 1040, 1088, 2048] {
            var identity = [Float](repeating: 0, count: cols * cols)
            for i in 0..<cols { identity[i * cols + i] = 1 }
            let q = try QuantizedMatrix(quantizing: identity, rows: cols, cols: cols, format: .int8)
            var rng = TestRandom(seed: UInt64(300 + cols))
            let tokens = 3
            var x = rng.weights(tokens * cols, scale: 2)
            for i in x.indices { x[i] *= Float(1 + (i % cols) / 1024 * 7) }
            let c = Case(q: q, x: x, tokens: tokens, deq: q.dequantize())
            let scalar = try run(c, path: .scalar, threaded: false)
            for path in Self.paths where path != .scalar {
                XCTAssertEqual(try run(c, path: path, threaded: false), scalar, "\(path.name) cols \(cols)")
            }
        }
    }

    func testNonFiniteActivationsGiveNaN() throws {
        // Odd widths take the portable activation quantizer, 1024 the SIMD one. No finite result
        // may come out of a non-finite input.
        for f in WeightFormat.allCases {
            for cols in [QuantTest.oddCols(for: f), 1024] {
                let c = try makeCase(f, rows: 3, cols: cols, tokens: 1, seed: 5)
                for bad in [Float.nan, .infinity] {
                    var x = c.x
                    x[cols - 7] = bad
                    for path in Self.paths {
                        let y = try run(Case(q: c.q, x: x, tokens: 1, deq: c.deq), path: path, threaded: false)
                        // Integer formats give NaN; f32/bf16/f16 follow IEEE (an Inf may stay ±Inf).
                        let ok = f.isFloat ? y.allSatisfy { !$0.isFinite } : y.allSatisfy(\.isNaN)
                        XCTAssertTrue(ok, "\(f) \(path.name) cols \(cols) \(bad)")
                    }
                }
            }
        }
    }

    func testEmptyShapes() throws {
        let q = try QuantizedMatrix(quantizing: [], rows: 0, cols: 64, format: .int4g64)
        XCTAssertEqual(q.byteCount, 0)
        XCTAssertEqual(q.matvec([Float](repeating: 1, count: 64)), [])
        let c = try makeCase(.int8, rows: 4, cols: 40, tokens: 1, seed: 3)
        XCTAssertEqual(c.q.matmul([], tokens: 0), [])
    }

    func testUnavailablePathIsAnError() throws {
        let c = try makeCase(.int8, rows: 2, cols: 32, tokens: 1, seed: 4)
        for path in KernelPath.allCases where !path.isAvailable {
            XCTAssertThrowsError(try run(c, path: path, threaded: false)) {
                XCTAssertEqual(($0 as? QuantError)?.kind, .pathUnavailable)
            }
            XCTAssertThrowsError(try KernelConfig.setPath(path))
        }
    }
}

/// moe_matmul_many runs several products as one pool job; each output must be exactly what the
/// product gives on its own (same kernel per row, whatever the chunking).
final class MatmulManyTests: XCTestCase {
    /// Products that read the same input (q, k and v; gate and up) share its quantized rows;
    /// formats that quantize it differently must still get their own.
    func testProductsSharingAnInputEqualEachAlone() throws {
        let before = KernelConfig.threads
        defer { KernelConfig.setThreads(before) }
        KernelConfig.setThreads(2)
        var rng = TestRandom(seed: 78)
        let cols = 256, tokens = 3
        let formats: [WeightFormat] = [.int8, .int4g64, .int8, .int4g32a, .int4g64, .f32, .int4g128a]
        let rowCounts = [40, 64, 24, 33, 48, 16, 8]
        let matrices = try zip(formats, rowCounts).map { f, rows in
            try QuantizedMatrix(quantizing: rng.weights(rows * cols), rows: rows, cols: cols, format: f)
        }
        let input = rng.weights(tokens * cols, scale: 2)
        let alone = matrices.map { $0.matmul(input, tokens: tokens) }
        let x = UnsafeMutableBufferPointer<Float>.allocate(capacity: input.count)
        _ = x.initialize(from: input)
        let ys = rowCounts.map { UnsafeMutableBufferPointer<Float>.allocate(capacity: $0 * tokens) }
        defer { ([x] + ys).forEach { $0.deallocate() } }
        let products = matrices.indices.map { i in
            moe_product(fmt: matrices[i].format.id, w: matrices[i].bytes.baseAddress, rows: Int64(matrices[i].rows),
                        cols: Int64(cols), x: UnsafePointer(x.baseAddress), T: Int64(tokens), y: ys[i].baseAddress)
        }
        XCTAssertEqual(moe_matmul_many(products, Int32(products.count)), Int32(MOE_OK))
        for i in matrices.indices {
            XCTAssertEqual(Array(ys[i]), alone[i], "product \(i): \(formats[i])")
        }
    }

    /// Activation rows are quantized on first use by whichever threads reach a product: both
    /// threads claim rows of the same input at once (long rows, few of them), and every product
    /// that reads the input must still see all of its rows, from this call (each round brings
    /// new activations, so rows left over in the scratch from the round before are wrong).
    func testRowsQuantizedByBothThreadsAreComplete() throws {
        let before = KernelConfig.threads
        defer { KernelConfig.setThreads(before) }
        KernelConfig.setThreads(2)
        var rng = TestRandom(seed: 79)
        let cols = 8192, tokens = 8, rows = 16
        let formats: [WeightFormat] = [.int8, .int4g64, .int8, .int4g64]
        let matrices = try formats.map { try QuantizedMatrix(quantizing: rng.weights(rows * cols), rows: rows, cols: cols, format: $0) }
        let x = UnsafeMutableBufferPointer<Float>.allocate(capacity: tokens * cols)
        let ys = matrices.map { _ in UnsafeMutableBufferPointer<Float>.allocate(capacity: rows * tokens) }
        defer { ([x] + ys).forEach { $0.deallocate() } }
        let products = matrices.indices.map { i in
            moe_product(fmt: matrices[i].format.id, w: matrices[i].bytes.baseAddress, rows: Int64(rows), cols: Int64(cols),
                        x: UnsafePointer(x.baseAddress), T: Int64(tokens), y: ys[i].baseAddress)
        }
        for round in 0..<40 {
            let input = rng.weights(tokens * cols, scale: 2)
            _ = x.update(fromContentsOf: input)
            let alone = matrices.map { $0.matmul(input, tokens: tokens) }
            XCTAssertEqual(moe_matmul_many(products, Int32(products.count)), Int32(MOE_OK))
            for i in matrices.indices where Array(ys[i]) != alone[i] {
                XCTFail("round \(round), product \(i): \(formats[i]) differs from the product alone")
            }
        }
    }

    func testManyEqualsEachProductAlone() throws {
        let before = KernelConfig.threads
        defer { KernelConfig.setThreads(before) }
        KernelConfig.setThreads(2)
        var rng = TestRandom(seed: 77)
        // Mixed formats, shapes and token counts, as one MoE step hands them over.
        let shapes: [(WeightFormat, Int, Int, Int)] = [(.int4g64, 64, 256, 1), (.int4g64, 64, 256, 3), (.int8, 40, 256, 8),
                                                       (.f32, 24, 96, 1), (.bf16, 16, 64, 2), (.int4g32a, 33, 96, 5),
                                                       (.int8, 300, 1024, 1), (.int4g128, 8, 128, 0)]
        let matrices = try shapes.map { f, rows, cols, _ in
            try QuantizedMatrix(quantizing: rng.weights(rows * cols), rows: rows, cols: cols, format: f)
        }
        let inputs = shapes.map { _, _, cols, tokens in rng.weights(tokens * cols, scale: 2) }
        let alone = zip(matrices, zip(inputs, shapes)).map { q, pair in q.matmul(pair.0, tokens: pair.1.3) }
        // Raw buffers: every product's input and output must be live at once.
        let xs = inputs.map { x -> UnsafeMutableBufferPointer<Float> in
            let p = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(x.count, 1))
            _ = p.initialize(from: x)
            return p
        }
        let ys = shapes.map { _, rows, _, tokens in
            UnsafeMutableBufferPointer<Float>.allocate(capacity: max(rows * tokens, 1))
        }
        defer { (xs + ys).forEach { $0.deallocate() } }
        let products = matrices.indices.map { i in
            moe_product(fmt: matrices[i].format.id, w: matrices[i].bytes.baseAddress, rows: Int64(matrices[i].rows),
                        cols: Int64(matrices[i].cols), x: xs[i].baseAddress, T: Int64(shapes[i].3), y: ys[i].baseAddress)
        }
        XCTAssertEqual(moe_matmul_many(products, Int32(products.count)), Int32(MOE_OK))
        for i in 0..<matrices.count {
            XCTAssertEqual(Array(ys[i].prefix(alone[i].count)), alone[i], "product \(i): \(shapes[i].0)")
        }

        // An invalid product is reported before anything runs.
        var y = [Float](repeating: 0, count: 4)
        y.withUnsafeMutableBufferPointer { out in
            let bad = moe_product(fmt: 99, w: nil, rows: 1, cols: 4, x: nil, T: 1, y: out.baseAddress)
            XCTAssertEqual(moe_matmul_many([bad], 1), Int32(MOE_ERR_FORMAT))
        }
    }
}
