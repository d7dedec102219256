import MoEFormat
import MoEKernels

/// A weight matrix computed on directly from its stored bytes: a bundle's memory map, or the
/// decompressed copy of a zstd payload. Nothing is expanded to f32.
public final class StoredMatrix: MatrixOperator, @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    public let format: WeightFormat
    private let bytes: PayloadBytes
    private let rowBytes: Int

    /// Fails when the byte count does not match the shape in this format.
    public init(format: WeightFormat, rows: Int, cols: Int, bytes: PayloadBytes) throws {
        guard let expected = format.matrixBytes(rows: rows, cols: cols), let rowBytes = format.rowBytes(cols: cols),
              expected == bytes.buffer.count,
              moe_matrix_bytes(format.id, Int64(rows), Int64(cols)) == Int64(expected) else {
            throw FormatError("a \(rows)x\(cols) \(format.rawValue) matrix cannot be made from \(bytes.buffer.count) bytes")
        }
        self.format = format
        self.rows = rows
        self.cols = cols
        self.bytes = bytes
        self.rowBytes = rowBytes
    }

    public var storageBytes: Int { bytes.buffer.count }

    public func multiply(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>) {
        guard rows > 0, count > 0, let base = bytes.buffer.baseAddress else { return }
        if format == .f32 {
            F32Product.multiply(base.assumingMemoryBound(to: Float.self), rows: rows, cols: cols, x, count: count, into: y)
            return
        }
        // The shape was checked against the kernels' own size rule in init, so this cannot fail.
        _ = moe_matmul(format.id, base, Int64(rows), Int64(cols), x, Int64(count), y)
    }

    public var kernelWeights: KernelWeights? {
        bytes.buffer.baseAddress.map { KernelWeights(format: format.id, base: $0, rows: rows, cols: cols) }
    }

    public func copyRow(_ row: Int, into destination: UnsafeMutablePointer<Float>) {
        guard row >= 0, row < rows, let base = bytes.buffer.baseAddress else { return }
        _ = moe_dequantize(format.id, base + row * rowBytes, 1, Int64(cols), destination)
    }
}
