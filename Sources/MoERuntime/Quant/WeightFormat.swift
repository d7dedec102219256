// Weight storage formats and their byte sizes. The byte layouts are specified
// in docs/quantization.md; the raw values are the names written into bundles.
import MoEFormat
import MoEKernels

/// The kernels' view of `WeightFormat` (declared in MoEFormat, which names formats in bundles).
extension WeightFormat {
    /// The id used by the C kernels (and stable in files).
    public var id: Int32 {
        switch self {
        case .f32: Int32(MOE_FMT_F32)
        case .bf16: Int32(MOE_FMT_BF16)
        case .int8: Int32(MOE_FMT_INT8)
        case .int4g32: Int32(MOE_FMT_INT4G32)
        case .int4g64: Int32(MOE_FMT_INT4G64)
        case .int4g128: Int32(MOE_FMT_INT4G128)
        case .int4g32a: Int32(MOE_FMT_INT4G32A)
        case .int4g64a: Int32(MOE_FMT_INT4G64A)
        case .int4g128a: Int32(MOE_FMT_INT4G128A)
        case .f16: Int32(MOE_FMT_F16)
        }
    }

    /// The format a checkpoint tensor of this dtype is stored in.
    public init(_ dtype: DType) {
        switch dtype {
        case .f32: self = .f32
        case .bf16: self = .bf16
        case .f16: self = .f16
        }
    }

    /// Whether the values are plain floats (f32, bf16, f16): exact in f32, multiplied with sgemm.
    public var isFloat: Bool { self == .f32 || self == .bf16 || self == .f16 }

    public init?(id: Int32) {
        guard let f = WeightFormat.allCases.first(where: { $0.id == id }) else { return nil }
        self = f
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

    init(code: Int32, format: WeightFormat, rows: Int, cols: Int, row: Int64 = -1) {
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
