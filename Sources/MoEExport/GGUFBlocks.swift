import Foundation
import MoEFormat
import MoEKernels

/// How a bundle's weight format becomes a ggml type, one stored row at a time.
///
/// Exact: int4g32/q4g32 → Q4_0 and int4g32a → Q4_1 and nl4g32 → IQ4_NL byte for byte (same
/// block: f16 scale [, f16 min], 16 bytes with weight j in the low nibble of byte j and weight
/// j+16 in its high nibble); the g64/g128 variants by repeating the group's scale (and min) for
/// each 32-weight block; f32/f16/bf16 as themselves; any 4-bit symmetric block → Q4_1 (min =
/// −8·scale) or Q8_0 (codes −8..7 or the IQ4_NL grid values as int8); anything → F32.
/// Rounded: int8 (one f32 scale per row) → Q8_0, whose scale is an f16 per 32 weights.
enum GGUFBlocks {
    /// The ggml type that holds a bundle format exactly, or (int8) most closely.
    static func nativeType(_ format: WeightFormat) -> GGMLType {
        switch format {
        case .f32: .f32
        case .f16: .f16
        case .bf16: .bf16
        case .int8: .q8_0
        case .int4g32, .int4g64, .int4g128, .q4g32, .q4g64, .q4g128: .q4_0
        case .int4g32a, .int4g64a, .int4g128a: .q4_1
        case .nl4g32: .iq4_nl
        // ggml's 3- and 2-bit types (Q3_K, Q2_K) have super-blocks of 256 with quantized
        // sub-scales: not the same numbers. Q4_0 holds the codes exactly (nibble c - m + 8).
        case .q3g32, .q3g64, .q2g32, .q2g64: .q4_0
        }
    }

    /// The nearest type that holds every one of `formats` (the experts of one layer): their
    /// common native type; Q4_1 for symmetric and asymmetric int4 (exact); Q8_0 for 4-bit
    /// symmetric, grid and int8 (exact for the 4-bit ones); F32 otherwise (exact).
    static func commonType(_ formats: Set<WeightFormat>) -> GGMLType {
        let types = Set(formats.map(nativeType))
        if types.count == 1 { return types.first! }
        if types.isSubset(of: [.q4_0, .q4_1]) { return .q4_1 }
        if types.isSubset(of: [.q4_0, .iq4_nl, .q8_0]) { return .q8_0 }
        return .f32
    }

    /// Whether `format` → `type` keeps every weight exactly.
    static func isExact(_ format: WeightFormat, to type: GGMLType) -> Bool {
        if type == .f32 { return true }
        if format == .int8 { return false }
        return nativeType(format) == type || (nativeType(format) == .q4_0 && (type == .q4_1 || type == .q8_0))
            || (format == .nl4g32 && type == .q8_0)
    }

    /// What int8 → Q8_0 changed, over every converted weight.
    struct Int8Error {
        var maxAbs: Double = 0
        /// Largest error relative to its row's largest weight.
        var maxRelative: Double = 0
        var squaredError: Double = 0
        var squaredWeights: Double = 0
        var weights = 0
    }

    /// Converts a [rows, cols] matrix stored in `format` into `type`, appending the result.
    static func convert(_ src: UnsafeRawBufferPointer, format: WeightFormat, rows: Int, cols: Int, to type: GGMLType,
                        into out: inout [UInt8], int8Error: inout Int8Error) throws {
        guard let rowBytes = format.rowBytes(cols: cols), src.count == rowBytes * rows,
              let outRow = type.rowBytes(cols: cols) else {
            throw FormatError("gguf export: a \(rows)x\(cols) \(format.rawValue) tensor cannot become \(type.name)")
        }
        out.reserveCapacity(out.count + outRow * rows)
        let t = format.traits
        // Plain copies.
        if nativeType(format) == type, format.groupSize == nil || format.groupSize == 32, format != .int8, t.bits != 2, t.bits != 3 {
            out.append(contentsOf: src)
            return
        }
        if type == .f32 {
            var values = [Float](repeating: 0, count: rows * cols)
            let rc = values.withUnsafeMutableBufferPointer { moe_dequantize(format.id, src.baseAddress, Int64(rows), Int64(cols), $0.baseAddress) }
            guard rc == 0 else { throw FormatError("gguf export: cannot decode a \(format.rawValue) tensor: \(String(cString: moe_strerror(rc)))") }
            values.withUnsafeBytes { out.append(contentsOf: $0) }
            return
        }
        if format == .int8 {
            guard type == .q8_0 else { throw FormatError("gguf export: int8 cannot become \(type.name)") }
            for r in 0..<rows { int8Row(src, offset: r * rowBytes, cols: cols, into: &out, error: &int8Error) }
            return
        }
        if t.kernel == Int32(MOE_KERNEL_LOWBIT) {
            try lowBitRows(src, format: format, rows: rows, cols: cols, to: type, into: &out)
            return
        }
        // 4-bit blocks: walk 32-weight blocks of each row; header = f16 scale [, f16 min].
        guard let group = format.groupSize, t.bits == 4 else {
            throw FormatError("gguf export: \(format.rawValue) cannot become \(type.name)")
        }
        let header = Int(t.header), groupBytes = header + group / 2
        let grid: [Int8]? = t.grid.map { g in (0..<16).map { g[$0] } }
        for r in 0..<rows {
            for g in 0..<(cols / group) {
                let base = r * rowBytes + g * groupBytes
                for k in 0..<(group / 32) {
                    let nib = base + header + 16 * k
                    switch type {
                    case .q4_0 where header == 2, .q4_1 where header == 4, .iq4_nl where grid != nil:
                        out.append(contentsOf: src[base..<(base + header)])
                        out.append(contentsOf: src[nib..<(nib + 16)])
                    case .q4_1 where header == 2 && grid == nil:
                        let d = UInt16(src[base]) | UInt16(src[base + 1]) << 8
                        let m = Float16(bitPattern: d) * -8
                        guard m.isFinite else { throw FormatError("gguf export: an int4 scale too large for Q4_1's f16 min") }
                        out.append(src[base]); out.append(src[base + 1])
                        out.append(UInt8(m.bitPattern & 0xff)); out.append(UInt8(m.bitPattern >> 8))
                        out.append(contentsOf: src[nib..<(nib + 16)])
                    case .q8_0 where header == 2:
                        out.append(src[base]); out.append(src[base + 1])
                        var codes = [UInt8](repeating: 0, count: 32)
                        for i in 0..<16 {
                            let byte = src[nib + i]
                            let lo = Int(byte & 0xf), hi = Int(byte >> 4)
                            let a = grid.map { Int($0[lo]) } ?? (lo - 8), b = grid.map { Int($0[hi]) } ?? (hi - 8)
                            codes[i] = UInt8(bitPattern: Int8(a))
                            codes[i + 16] = UInt8(bitPattern: Int8(b))
                        }
                        out.append(contentsOf: codes)
                    default:
                        throw FormatError("gguf export: \(format.rawValue) cannot become \(type.name)")
                    }
                }
            }
        }
    }

    /// 3- and 2-bit rows (f16 scale per group, codes c with weight s (c - m), m = 2^(bits-1))
    /// as Q4_0 (nibble c - m + 8), Q4_1 (min -8 s) or Q8_0 (int8 c - m), the scale repeated for
    /// each 32-weight block: exact.
    static func lowBitRows(_ src: UnsafeRawBufferPointer, format: WeightFormat, rows: Int, cols: Int, to type: GGMLType,
                           into out: inout [UInt8]) throws {
        let t = format.traits, bits = Int(t.bits), group = Int(t.group), mid = 1 << (bits - 1)
        let groupBytes = 2 + group * bits / 8, rowBytes = (cols / group) * groupBytes
        guard [.q4_0, .q4_1, .q8_0].contains(type) else { throw FormatError("gguf export: \(format.rawValue) cannot become \(type.name)") }
        var v = [Int](repeating: 0, count: 32)
        for r in 0..<rows {
            for g in 0..<(cols / group) {
                let base = r * rowBytes + g * groupBytes
                for k in 0..<(group / 32) {
                    let blk = base + 2 + k * 4 * bits
                    for j in 0..<32 {
                        var c = Int(src[blk + (j & 7)] >> (2 * (j >> 3))) & 3
                        if bits == 3 { c |= (Int(src[blk + 8 + (j >> 3)] >> (j & 7)) & 1) << 2 }
                        v[j] = c - mid
                    }
                    out.append(src[base]); out.append(src[base + 1])
                    if type == .q4_1 {
                        let m = Float16(bitPattern: UInt16(src[base]) | UInt16(src[base + 1]) << 8) * -8
                        guard m.isFinite else { throw FormatError("gguf export: a scale too large for Q4_1's f16 min") }
                        out.append(UInt8(m.bitPattern & 0xff)); out.append(UInt8(m.bitPattern >> 8))
                    }
                    if type == .q8_0 {
                        for j in 0..<32 { out.append(UInt8(bitPattern: Int8(v[j]))) }
                    } else {
                        for i in 0..<16 { out.append(UInt8(v[i] + 8) | UInt8(v[i + 16] + 8) << 4) }
                    }
                }
            }
        }
    }

    /// One int8 row (f32 scale, cols codes) as Q8_0 blocks. Each block keeps the codes and
    /// takes the row scale rounded to f16 (relative error ≤ 2⁻¹¹) when that is a normal f16;
    /// otherwise (tiny or huge scales) it is requantized from the decoded values with ggml's
    /// rule, the f16 block scale = max|w|/127 and codes rounded against the stored scale.
    static func int8Row(_ src: UnsafeRawBufferPointer, offset: Int, cols: Int, into out: inout [UInt8], error e: inout Int8Error) {
        let scale = Float(bitPattern: UInt32(src[offset]) | UInt32(src[offset + 1]) << 8 | UInt32(src[offset + 2]) << 16 | UInt32(src[offset + 3]) << 24)
        let h = Float16(scale)
        let keep = h.isNormal || scale == 0
        var rowMax: Float = 0
        for j in 0..<cols { rowMax = max(rowMax, abs(scale * Float(Int8(bitPattern: src[offset + 4 + j])))) }
        for b in 0..<(cols / 32) {
            var codes = [Int8](repeating: 0, count: 32)
            var w = [Float](repeating: 0, count: 32)
            for i in 0..<32 {
                codes[i] = Int8(bitPattern: src[offset + 4 + 32 * b + i])
                w[i] = scale * Float(codes[i])
            }
            var d: Float16 = keep ? h : 0
            if !keep {
                let amax = w.map(abs).max() ?? 0
                d = Float16(amax / 127)
                let stored = Float(d)
                for i in 0..<32 { codes[i] = stored == 0 ? 0 : Int8(max(-127, min(127, (w[i] / stored).rounded(.toNearestOrEven)))) }
            }
            out.append(UInt8(d.bitPattern & 0xff)); out.append(UInt8(d.bitPattern >> 8))
            for i in 0..<32 {
                out.append(UInt8(bitPattern: codes[i]))
                let err = Double(abs(Float(d) * Float(codes[i]) - w[i]))
                e.maxAbs = max(e.maxAbs, err)
                if rowMax > 0 { e.maxRelative = max(e.maxRelative, err / Double(rowMax)) }
                e.squaredError += err * err
                e.squaredWeights += Double(w[i]) * Double(w[i])
            }
            e.weights += 32
        }
    }
}
