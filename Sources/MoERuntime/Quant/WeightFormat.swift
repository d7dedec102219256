// Weight formats as the runtime uses them: sizes that throw the kernels' errors. The
// formats themselves (names, ids, sizes) are the kernels' table, read by MoEFormat.
import MoEFormat
import MoEKernels

/// The kernels' view of `WeightFormat` (declared in MoEFormat from the kernels' format table).
extension WeightFormat {
    /// The format a checkpoint tensor of this dtype is stored in.
    public init(_ dtype: DType) {
        switch dtype {
        case .f32: self = .f32
        case .bf16: self = .bf16
        case .f16: self = .f16
        }
    }

    /// Bytes of one stored row of `cols` weights.
    public func rowByteCount(cols: Int) throws -> Int {
        let n = moe_row_bytes(id, Int64(cols))
        guard n >= 0 else { throw QuantError(code: Int32(n), format: self, rows: 1, cols: cols) }
        return Int(n)
    }

    /// Bytes of a rows x cols matrix in this format.
    public func byteCount(rows: Int, cols: Int) throws -> Int {
        let n = moe_matrix_bytes(id, Int64(rows), Int64(cols))
        guard n >= 0 else { throw QuantError(code: Int32(n), format: self, rows: rows, cols: cols) }
        return Int(n)
    }
}

/// A quantization or shape error, with the kernel's message and the shape involved.
public struct QuantError: Error, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        case unknownFormat, badShape, nonFinite, outOfRange, sizeMismatch, pathUnavailable, misaligned
    }
    public let kind: Kind
    public let message: String

    public var description: String { message }

    init(kind: Kind, message: String) {
        self.kind = kind
        self.message = message
    }

    public init(code: Int32, format: WeightFormat, rows: Int, cols: Int, row: Int64 = -1) {
        let kinds: [Int32: Kind] = [
            Int32(MOE_ERR_FORMAT): .unknownFormat, Int32(MOE_ERR_SHAPE): .badShape, Int32(MOE_ERR_NONFINITE): .nonFinite,
            Int32(MOE_ERR_RANGE): .outOfRange, Int32(MOE_ERR_SIZE): .sizeMismatch, Int32(MOE_ERR_PATH): .pathUnavailable,
        ]
        kind = kinds[code] ?? .badShape
        let text = String(cString: moe_strerror(code))
        let at = row >= 0 ? " (row \(row))" : ""
        message = "\(format.rawValue) \(rows)x\(cols): \(text)\(at)"
    }
}
