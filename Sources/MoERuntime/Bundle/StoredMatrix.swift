#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import MoEFormat
import MoEKernels

/// A weight matrix computed on directly from its stored bytes: a bundle's memory map, the
/// decompressed copy of a zstd payload, or a checkpoint's memory-mapped tensor in its stored
/// dtype. Nothing is expanded to f32 as a whole: float formats (f32, bf16, f16) go through
/// `FloatProduct`, the quantized ones through the kernels.
public final class StoredMatrix: MatrixOperator, @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    public let format: WeightFormat
    private let buffer: UnsafeRawBufferPointer
    /// Keeps `buffer` alive (a bundle, an arena, a checkpoint, owned bytes).
    private let owner: AnyObject
    /// The bytes are a read-only file mapping, whose pages `releasePages` may drop.
    private let isFileMapped: Bool
    private let rowBytes: Int

    /// Fails when the byte count does not match the shape in this format.
    public convenience init(format: WeightFormat, rows: Int, cols: Int, bytes: PayloadBytes) throws {
        try self.init(format: format, rows: rows, cols: cols, buffer: bytes.buffer, owner: bytes, fileMapped: bytes.isMapped)
    }

    /// Over `buffer`, which `owner` keeps alive; `fileMapped` when it lies in a read-only map of
    /// a file. Fails when the byte count does not match the shape in this format, or float data
    /// is not aligned to its element size.
    public init(format: WeightFormat, rows: Int, cols: Int, buffer: UnsafeRawBufferPointer, owner: AnyObject,
                fileMapped: Bool) throws {
        guard let expected = format.matrixBytes(rows: rows, cols: cols), let rowBytes = format.rowBytes(cols: cols),
              expected == buffer.count,
              moe_matrix_bytes(format.id, Int64(rows), Int64(cols)) == Int64(expected) else {
            throw FormatError("a \(rows)x\(cols) \(format.rawValue) matrix cannot be made from \(buffer.count) bytes")
        }
        let align = format == .f32 ? 4 : (format.isFloat ? 2 : 1)
        if let base = buffer.baseAddress, Int(bitPattern: base) % align != 0 {
            throw FormatError("a \(format.rawValue) matrix must be \(align)-byte aligned")
        }
        self.format = format
        self.rows = rows
        self.cols = cols
        self.buffer = buffer
        self.owner = owner
        self.isFileMapped = fileMapped
        self.rowBytes = rowBytes
    }

    public var storageBytes: Int { buffer.count }

    public func multiply(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>) {
        guard rows > 0, count > 0, let base = buffer.baseAddress else { return }
        if format.isFloat {
            FloatProduct.multiply(format: format.id, base, rows: rows, cols: cols, x, count: count, into: y)
            return
        }
        // The shape was checked against the kernels' own size rule in init, so this cannot fail.
        _ = moe_matmul(format.id, base, Int64(rows), Int64(cols), x, Int64(count), y)
    }

    public var kernelWeights: KernelWeights? {
        buffer.baseAddress.map { KernelWeights(format: format.id, base: $0, rows: rows, cols: cols) }
    }

    public func copyRow(_ row: Int, into destination: UnsafeMutablePointer<Float>) {
        guard row >= 0, row < rows, let base = buffer.baseAddress else { return }
        _ = moe_dequantize(format.id, base + row * rowBytes, 1, Int64(cols), destination)
    }

    /// Drops the mapped pages (the whole pages the bytes touch; a neighbour's bytes on a shared
    /// page are simply read again from the file). Owned memory is left alone: dropping its pages
    /// would zero it.
    public func releasePages() {
        guard isFileMapped, let base = buffer.baseAddress, !buffer.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = Int(bitPattern: base) / page * page
        let end = (Int(bitPattern: base) + buffer.count + page - 1) / page * page
        _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED)
    }
}
