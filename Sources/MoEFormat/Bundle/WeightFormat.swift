import MoEKernels

/// How a weight is stored in a bundle. The raw values are the names in MoEKernels' format table
/// (`moe_format_info`, Sources/MoEKernels/formats.c), which holds everything else about a format:
/// its id, code bits, group, header bytes, symmetry, levels and kernel family. The byte layout of
/// each is specified in docs/quantization.md.
public enum WeightFormat: String, Sendable, Codable, CaseIterable {
    case f32
    case bf16
    case int8
    /// Symmetric int4, 15 levels (-7..7, scale max|w| / 7): what bundles written before the
    /// 16-level formats hold. Still read; `q4g*` replaces it for writing.
    case int4g32
    case int4g64
    case int4g128
    case int4g32a
    case int4g64a
    case int4g128a
    /// IEEE binary16: checkpoints stored in float16 (a bundle may carry it too).
    case f16
    /// Symmetric int4, all 16 levels (-8..7; the weight of largest magnitude maps to -8).
    case q4g32
    case q4g64
    case q4g128
    /// 4-bit codes on a fixed non-uniform 16-value grid, groups of 32, f16 scale.
    case nl4g32
    /// Symmetric 3-bit codes, 8 levels (-4..3, signed f16 scale found by a search), for routed experts.
    case q3g32
    case q3g64
    /// Symmetric 2-bit codes, 4 levels (-2..1, signed f16 scale found by a search), for routed experts.
    case q2g32
    case q2g64

    /// The id of this name in the kernels' table (stable: bundles written by other versions use the name).
    public var id: Int32 { Self.ids[self]! }

    public init?(id: Int32) {
        guard let info = moe_format_info(id), let f = WeightFormat(rawValue: String(cString: info.pointee.name)) else {
            return nil
        }
        self = f
    }

    private static let ids: [WeightFormat: Int32] = {
        var ids: [WeightFormat: Int32] = [:]
        for id in 0..<Int32(MOE_FMT_COUNT) {
            if let info = moe_format_info(id), let f = WeightFormat(rawValue: String(cString: info.pointee.name)) { ids[f] = id }
        }
        precondition(ids.count == allCases.count, "every WeightFormat needs a row in the kernels' format table")
        return ids
    }()

    /// The kernels' table row.
    public var traits: moe_format_traits { moe_format_info(id)!.pointee }

    /// Weights per scale along a row, nil for formats without groups (floats, int8).
    public var groupSize: Int? { traits.group > 0 ? Int(traits.group) : nil }

    public var isAsymmetric: Bool { traits.symmetric == 0 }

    /// Whether the values are plain floats (f32, bf16, f16): exact in f32, multiplied with sgemm.
    public var isFloat: Bool { traits.levels == 0 }

    /// The formats that differ from this one only in their group size (itself included).
    public var family: [WeightFormat] {
        let t = traits
        return Self.allCases.filter {
            let u = $0.traits
            return u.kernel == t.kernel && u.bits == t.bits && u.symmetric == t.symmetric && u.levels == t.levels
                && u.header == t.header && (u.grid == nil) == (t.grid == nil)
        }
    }

    /// Bytes of one stored row of `cols` values (the table's rule), nil when the shape is
    /// impossible for the format.
    public func rowBytes(cols: Int) -> Int? {
        let n = moe_row_bytes(id, Int64(cols))
        return n >= 0 ? Int(n) : nil
    }

    /// Bytes of a rows x cols matrix, nil on an impossible shape or overflow.
    public func matrixBytes(rows: Int, cols: Int) -> Int? {
        let n = moe_matrix_bytes(id, Int64(rows), Int64(cols))
        return n >= 0 ? Int(n) : nil
    }

    /// Storage bits per weight, including scales.
    public func bitsPerWeight(cols: Int) -> Double? {
        guard cols > 0, let row = rowBytes(cols: cols) else { return nil }
        return Double(row * 8) / Double(cols)
    }
}
