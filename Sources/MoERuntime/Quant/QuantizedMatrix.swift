// A weight matrix in one of the `WeightFormat`s: one contiguous byte buffer
// plus rows, cols and format, rows stored back to back (docs/quantization.md).
//
//   let q = try QuantizedMatrix(quantizing: w, rows: 512, cols: 1024, format: .int4g64)
//   q.matvec(x: x, y: y)                    // y[rows] = W x
//   q.matmul(x: xs, tokens: T, y: ys)       // Y[T, rows] = X[T, cols] W^T
//   let bytes = try QuantizedMatrix.quantize(w, rows: r, cols: c, format: .int8)  // for writers
//   let m = try QuantizedMatrix(bytes: mmapSlice, rows: r, cols: c, format: .int8, owner: mapping)
//
// The buffer is either owned (quantized here or copied in) or borrowed, e.g. a
// slice of a memory-mapped bundle; `owner` keeps a borrowed buffer's backing
// alive. The matrix is immutable, so sharing it across threads is safe.
// Buffer-length mismatches in matvec/matmul are programming errors and trap.
import MoEFormat
import MoEKernels

public struct QuantizedMatrix: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    public let format: WeightFormat
    /// The stored bytes, exactly `format.byteCount(rows:cols:)` long.
    public let bytes: UnsafeRawBufferPointer
    private let owner: AnyObject?

    /// Borrows `bytes` (not copied). f32/bf16/f16 data must be 4-/2-/2-byte aligned.
    public init(bytes: UnsafeRawBufferPointer, rows: Int, cols: Int, format: WeightFormat,
                owner: AnyObject?) throws {
        let expected = try format.byteCount(rows: rows, cols: cols)
        guard bytes.count == expected else {
            throw QuantError(kind: .sizeMismatch,
                             message: "\(format.rawValue) \(rows)x\(cols) needs \(expected) bytes, got \(bytes.count)")
        }
        let align = format == .f32 ? 4 : (format == .bf16 || format == .f16 ? 2 : 1)
        if let base = bytes.baseAddress, Int(bitPattern: base) % align != 0 {
            throw QuantError(kind: .misaligned,
                             message: "\(format.rawValue) weights must be \(align)-byte aligned")
        }
        self.rows = rows
        self.cols = cols
        self.format = format
        self.bytes = bytes
        self.owner = owner
    }

    /// Copies already-quantized bytes into owned storage.
    public init(copying data: [UInt8], rows: Int, cols: Int, format: WeightFormat) throws {
        let storage = OwnedBytes(count: data.count)
        data.withUnsafeBytes { src in
            if let base = src.baseAddress { storage.pointer.copyMemory(from: base, byteCount: src.count) }
        }
        try self.init(bytes: storage.buffer, rows: rows, cols: cols, format: format, owner: storage)
    }

    /// Quantizes a row-major f32 matrix into owned storage.
    public init(quantizing w: UnsafeBufferPointer<Float>, rows: Int, cols: Int,
                format: WeightFormat) throws {
        let count = try format.byteCount(rows: rows, cols: cols)
        let storage = OwnedBytes(count: count)
        try QuantizedMatrix.quantize(w, rows: rows, cols: cols, format: format,
                                     into: UnsafeMutableRawBufferPointer(start: storage.pointer, count: count))
        try self.init(bytes: storage.buffer, rows: rows, cols: cols, format: format, owner: storage)
    }

    public init(quantizing w: [Float], rows: Int, cols: Int, format: WeightFormat) throws {
        self = try w.withUnsafeBufferPointer { try QuantizedMatrix(quantizing: $0, rows: rows, cols: cols, format: format) }
    }

    /// Quantized bytes of a row-major f32 matrix (what a bundle writer stores). `importance`
    /// (one value per column, e.g. the sum of squares of each input channel over calibration
    /// tokens) makes the formats with a scale search minimise the importance-weighted error.
    public static func quantize(_ w: UnsafeBufferPointer<Float>, rows: Int, cols: Int,
                                format: WeightFormat, importance: [Float]? = nil) throws -> [UInt8] {
        let count = try format.byteCount(rows: rows, cols: cols)
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes {
            try quantize(w, rows: rows, cols: cols, format: format, importance: importance, into: $0)
        }
        return out
    }

    /// Quantizes into a caller-provided buffer of exactly `byteCount(rows:cols:)` bytes.
    public static func quantize(_ w: UnsafeBufferPointer<Float>, rows: Int, cols: Int,
                                format: WeightFormat, importance: [Float]? = nil,
                                into dst: UnsafeMutableRawBufferPointer) throws {
        guard rows >= 0, cols >= 0, rows.multipliedReportingOverflow(by: cols) == (w.count, false) else {
            throw QuantError(kind: .sizeMismatch,
                             message: "\(format.rawValue) \(rows)x\(cols): source has \(w.count) floats")
        }
        if let importance, importance.count != cols {
            throw QuantError(kind: .sizeMismatch,
                             message: "\(format.rawValue) \(rows)x\(cols): \(importance.count) importance values for \(cols) columns")
        }
        var badRow: Int64 = -1
        let rc = importance.withOptionalBuffer { imp in
            moe_quantize_weighted(format.id, w.baseAddress, Int64(rows), Int64(cols), imp,
                                  dst.baseAddress, dst.count, &badRow)
        }
        guard rc == Int32(MOE_OK) else {
            throw QuantError(code: rc, format: format, rows: rows, cols: cols, row: badRow)
        }
    }

    public var byteCount: Int { bytes.count }

    /// y[rows] = W x, on the configured kernel path and thread pool.
    public func matvec(x: UnsafeBufferPointer<Float>, y: UnsafeMutableBufferPointer<Float>) {
        matmul(x: x, tokens: 1, y: y)
    }

    /// y[T * rows] = x[T * cols] W^T.
    public func matmul(x: UnsafeBufferPointer<Float>, tokens: Int, y: UnsafeMutableBufferPointer<Float>) {
        precondition(x.count == tokens * cols && y.count == tokens * rows, "matmul buffer sizes do not match the shape")
        let rc = moe_matmul(format.id, bytes.baseAddress, Int64(rows), Int64(cols),
                            x.baseAddress, Int64(tokens), y.baseAddress)
        precondition(rc == Int32(MOE_OK), "matmul on a validated matrix failed: \(String(cString: moe_strerror(rc)))")
    }

    /// matmul on an explicit path, optionally without the worker pool (tests, benchmarks).
    public func matmul(x: UnsafeBufferPointer<Float>, tokens: Int, y: UnsafeMutableBufferPointer<Float>,
                       path: KernelPath, threaded: Bool) throws {
        precondition(x.count == tokens * cols && y.count == tokens * rows, "matmul buffer sizes do not match the shape")
        let rc = moe_matmul_on(path.rawValue, threaded ? 1 : 0, format.id, bytes.baseAddress, Int64(rows),
                               Int64(cols), x.baseAddress, Int64(tokens), y.baseAddress)
        guard rc == Int32(MOE_OK) else { throw QuantError(code: rc, format: format, rows: rows, cols: cols) }
    }

    /// Array conveniences (allocate; not for the decode loop).
    public func matvec(_ x: [Float]) -> [Float] { matmul(x, tokens: 1) }

    public func matmul(_ x: [Float], tokens: Int) -> [Float] {
        var y = [Float](repeating: 0, count: tokens * rows)
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { matmul(x: xp, tokens: tokens, y: $0) } }
        return y
    }

    /// The decoded f32 matrix (row-major), as the kernels see the weights.
    public func dequantize() -> [Float] {
        var out = [Float](repeating: 0, count: rows * cols)
        out.withUnsafeMutableBufferPointer { _ = moe_dequantize(format.id, bytes.baseAddress, Int64(rows), Int64(cols), $0.baseAddress) }
        return out
    }

    /// Exact reference product with the decoded weights and unquantized
    /// activations, accumulated in double. Slow: for tests and error reports.
    public func referenceMatmul(_ x: [Float], tokens: Int) -> [Float] {
        precondition(x.count == tokens * cols, "reference matmul input size does not match the shape")
        var y = [Float](repeating: 0, count: tokens * rows)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer {
                _ = moe_matmul_reference(format.id, bytes.baseAddress, Int64(rows), Int64(cols),
                                         xp.baseAddress, Int64(tokens), $0.baseAddress)
            }
        }
        return y
    }
}

extension Optional where Wrapped == [Float] {
    /// The array's base address for a C call, NULL when there is no array.
    fileprivate func withOptionalBuffer<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        switch self {
        case .some(let a): a.withUnsafeBufferPointer { body($0.baseAddress) }
        case .none: body(nil)
        }
    }
}

/// Heap bytes aligned to 64 for owned matrices.
final class OwnedBytes: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let count: Int

    init(count: Int) {
        self.count = count
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
    }

    var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: pointer, count: count) }

    deinit { pointer.deallocate() }
}
