/// How a weight is stored in a bundle. The raw values match MoEKernels' format names; the byte
/// layout of each is specified in docs/format.md (and docs/quantization.md for the kernels).
public enum WeightFormat: String, Sendable, Codable, CaseIterable {
    case f32
    case bf16
    case int8
    case int4g32
    case int4g64
    case int4g128
    case int4g32a
    case int4g64a
    case int4g128a
    /// IEEE binary16: checkpoints stored in float16 (a bundle may carry it too).
    case f16

    /// Int4 group size along the columns, nil for the other formats.
    public var groupSize: Int? {
        switch self {
        case .int4g32, .int4g32a: 32
        case .int4g64, .int4g64a: 64
        case .int4g128, .int4g128a: 128
        default: nil
        }
    }

    public var isAsymmetric: Bool { self == .int4g32a || self == .int4g64a || self == .int4g128a }

    /// Bytes of one stored row of `cols` values, nil when the shape is impossible for the format.
    /// int8: f32 scale + one byte per value. int4: per group an f16 scale (+ f16 minimum when
    /// asymmetric) then group/2 bytes of packed nibbles.
    public func rowBytes(cols: Int) -> Int? {
        guard cols >= 0, cols <= Int.max / 8 else { return nil }
        switch self {
        case .f32: return cols * 4
        case .bf16, .f16: return cols * 2
        case .int8: return 4 + cols
        default:
            guard let g = groupSize, cols % g == 0 else { return nil }
            return (cols / g) * ((isAsymmetric ? 4 : 2) + g / 2)
        }
    }

    /// Bytes of a rows x cols matrix, nil on an impossible shape or overflow.
    public func matrixBytes(rows: Int, cols: Int) -> Int? {
        guard rows >= 0, let row = rowBytes(cols: cols) else { return nil }
        let (total, overflow) = row.multipliedReportingOverflow(by: rows)
        return overflow ? nil : total
    }

    /// Storage bits per weight, including scales.
    public func bitsPerWeight(cols: Int) -> Double? {
        guard cols > 0, let row = rowBytes(cols: cols) else { return nil }
        return Double(row * 8) / Double(cols)
    }
}
