import CBLAS
import MoEFormat
import MoEKernels
import MoERuntime

/// How a 2-D weight's values become its stored codes (docs/quantization.md):
/// - round to nearest by the format's rule, each group's scale chosen by the calibration
///   importance of its input channels when `importance` covers the weight;
/// - with `hessians`, error-compensating rounding (GPTQ) as well, kept row by row only where it
///   gives a smaller output error Σ δ H δᵀ on the held-out tokens than round-to-nearest does.
///   A weight whose inputs no (or too few) calibration tokens reached, or a format without the
///   compensated rounding, rounds to nearest.
public struct WeightRounding: Sendable {
    public let importance: ImportanceMap?
    public let hessians: InputHessians?

    /// Added to H's diagonal before it is inverted, as a fraction of the diagonal's mean.
    public static let damping = 0.01
    /// Fewer fit or held-out tokens than these and a weight rounds to nearest.
    public static let minimumFitTokens = 32
    public static let minimumHeldOutTokens = 8

    public init(importance: ImportanceMap? = nil, hessians: InputHessians? = nil) {
        self.importance = importance
        self.hessians = hessians
    }

    public static let nearest = WeightRounding()

    public struct Result: Sendable {
        public var bytes: [UInt8]
        /// Rows stored with the compensated rounding (the rest rounded to nearest).
        public var compensatedRows: Int
    }

    /// Whether `quantize` may compensate `spec` in `format` (it still keeps only the rows where that helps).
    public func compensates(_ spec: TensorSpec, format: WeightFormat) -> Bool {
        guard moe_gptq_supported(format.id) != 0, let g = hessians?.gram(for: spec) else { return false }
        // Tied embeddings are compensated for their lm_head role only, which costs the lookup a
        // little: at int8 that cost won (built-in model: wint8 KL 0.000302 → 0.000311), at 4 bits
        // the lm_head's gain does (embeddings alone in nl4g32: 0.00703 → 0.00628).
        if spec.tensorClass == .embeddings && format.traits.bits >= 8 { return false }
        return g.fitTokens >= Self.minimumFitTokens && g.heldOutTokens >= Self.minimumHeldOutTokens
    }

    /// The stored bytes of `w` ([rows, cols] row-major, the tensor `spec` or some of its rows) in `format`.
    public func quantize(_ spec: TensorSpec, values w: [Float], rows: Int, cols: Int, format: WeightFormat) throws -> Result {
        let imp = importance?.importance(for: spec, cols: cols)
        let nearest = try w.withUnsafeBufferPointer { try QuantizedMatrix.quantize($0, rows: rows, cols: cols, format: format, importance: imp) }
        guard compensates(spec, format: format), let g = hessians?.gram(for: spec),
              let u = hessians?.inverseFactor(for: spec, damping: Self.damping) else {
            return Result(bytes: nearest, compensatedRows: 0)
        }
        var work = w
        var compensated = [UInt8](repeating: 0, count: nearest.count)
        var badRow: Int64 = -1
        let status = work.withUnsafeMutableBufferPointer { wb in
            u.withUnsafeBufferPointer { ub in
                compensated.withUnsafeMutableBytes { out in
                    moe_quantize_gptq(format.id, wb.baseAddress, Int64(rows), Int64(cols), ub.baseAddress, out.baseAddress, out.count, &badRow)
                }
            }
        }
        guard status == MOE_OK else { throw QuantError(code: status, format: format, rows: rows, cols: cols, row: badRow) }
        let errorNearest = try Self.rowErrors(w, bytes: nearest, rows: rows, cols: cols, format: format, hessian: g.heldOut)
        // the kernel leaves in `work` exactly what `compensated` decodes to
        for i in work.indices { work[i] = w[i] - work[i] }
        let errorCompensated = Self.rowQuadratic(work, rows: rows, cols: cols, hessian: g.heldOut)
        let rowBytes = nearest.count / max(rows, 1)
        var bytes = nearest
        var kept = 0
        for r in 0..<rows where errorCompensated[r] < errorNearest[r] {
            bytes.replaceSubrange(r * rowBytes..<(r + 1) * rowBytes, with: compensated[r * rowBytes..<(r + 1) * rowBytes])
            kept += 1
        }
        return Result(bytes: bytes, compensatedRows: kept)
    }

    /// δ_r H δ_rᵀ for every row r of δ = w − decode(bytes).
    static func rowErrors(_ w: [Float], bytes: [UInt8], rows: Int, cols: Int, format: WeightFormat, hessian: [Float]) throws -> [Double] {
        var delta = try QuantizedMatrix(copying: bytes, rows: rows, cols: cols, format: format).dequantize()
        for i in delta.indices { delta[i] = w[i] - delta[i] }
        return rowQuadratic(delta, rows: rows, cols: cols, hessian: hessian)
    }

    /// x_r H x_rᵀ for every row r of x [rows, cols] (H symmetric and full, [cols, cols]).
    static func rowQuadratic(_ x: [Float], rows: Int, cols: Int, hessian: [Float]) -> [Double] {
        var out = [Double](repeating: 0, count: rows)
        if rows * cols * cols >= blasWork {
            var product = [Float](repeating: 0, count: rows * cols)
            cblas_ssymm(CblasRowMajor, CblasRight, CblasUpper, Int32(rows), Int32(cols), 1, hessian, Int32(cols),
                        x, Int32(cols), 0, &product, Int32(cols))
            for r in 0..<rows {
                var s = 0.0
                for c in 0..<cols { s += Double(x[r * cols + c]) * Double(product[r * cols + c]) }
                out[r] = s
            }
        } else {
            moe_row_quadratic(x, Int64(rows), Int64(cols), hessian, &out)
        }
        return out
    }

    /// Multiply-adds below which a product runs in MoEKernels rather than OpenBLAS, whose threads
    /// spin between small calls (they took half of a size plan's time on the built-in model).
    static let blasWork = 1 << 25

    /// U with (H + λI)⁻¹ = UᵀU (row-major, upper triangle), λ = `damping` × the mean of H's
    /// diagonal; a channel no token reached (zero on the diagonal) gets the mean, which leaves
    /// it uncoupled. nil when H is zero or stays indefinite with ten and a hundred times the damping.
    static func inverseCholeskyFactor(_ h: [Float], width n: Int, damping: Double) -> [Float]? {
        guard n > 0, h.count == n * n else { return nil }
        let mean = (0..<n).reduce(0.0) { $0 + Double(h[$1 * n + $1]) } / Double(n)
        guard mean > 0, mean.isFinite else { return nil }
        var size = Int32(n), info: Int32 = 0
        for attempt in 0..<3 {
            var a = h.map(Double.init)
            let lambda = damping * mean * [1.0, 10, 100][attempt]
            for i in 0..<n { a[i * n + i] = (a[i * n + i] > 0 ? a[i * n + i] : mean) + lambda }
            // The buffer is symmetric, so LAPACK's column-major lower triangle is the row-major
            // upper one: after the second factorisation it holds U.
            dpotrf_("L", &size, &a, &size, &info)
            guard info == 0 else { continue }
            dpotri_("L", &size, &a, &size, &info)
            guard info == 0 else { continue }
            for r in 0..<n { for c in (r + 1)..<n { a[c * n + r] = a[r * n + c] } }
            dpotrf_("L", &size, &a, &size, &info)
            guard info == 0 else { continue }
            var u = [Float](repeating: 0, count: n * n)
            for r in 0..<n { for c in r..<n { u[r * n + c] = Float(a[r * n + c]) } }
            return u
        }
        return nil
    }
}
