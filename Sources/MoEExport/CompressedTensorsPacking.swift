import Foundation
import MoEFormat
import MoEKernels

/// A weight scheme of compressed-tensors' `pack-quantized` format that moepack writes:
/// symmetric integer codes q (stored as q + 2^(bits−1), packed little-endian into int32 words,
/// weight j of a row at bits bits·j of the row's bit stream) and one scale per group or per
/// row; weight = q · scale.
enum PackedScheme: Hashable, Comparable {
    /// 4-bit codes −8..7, one scale per `group` weights of a row (strategy "group").
    case int4(group: Int)
    /// 8-bit codes, one scale per row (strategy "channel").
    case int8Channel

    var bits: Int { if case .int4 = self { 4 } else { 8 } }
    var group: Int? { if case .int4(let g) = self { g } else { nil } }
    var label: String { group.map { "int4 group \($0)" } ?? "int8 per channel" }

    /// The `weights` block of its config group.
    var weightsConfig: [String: Any] {
        var w: [String: Any] = ["num_bits": bits, "type": "int", "symmetric": true, "dynamic": false,
                                "strategy": group == nil ? "channel" : "group", "observer": "minmax"]
        w["group_size"] = group ?? NSNull()
        return w
    }

    /// The scheme that holds a bundle format: every symmetric uniform format of 4 bits or fewer
    /// exactly (q4gN, the old 15-level int4gN, q3gN and q2gN, whose codes fit −8..7 with the
    /// same scale); int8 up to its scale's rounding to the export dtype. nil for the float
    /// formats, the non-uniform grid (nl4g32) and the asymmetric int4gNa.
    static func holding(_ format: WeightFormat) -> PackedScheme? {
        if format == .int8 { return .int8Channel }
        let t = format.traits
        guard !format.isFloat, t.symmetric != 0, t.grid == nil, t.bits <= 4, let g = format.groupSize else { return nil }
        return .int4(group: g)
    }

    /// One scheme for tensors an engine fuses (a layer's experts, q/k/v, gate/up): their
    /// common one, or for 4-bit ones of several groups the smallest group (each scale repeated),
    /// exact. nil when none holds them all.
    static func common(_ schemes: Set<PackedScheme>) -> PackedScheme? {
        if schemes.count == 1 { return schemes.first }
        let groups = schemes.compactMap(\.group)
        return groups.count == schemes.count ? .int4(group: groups.min()!) : nil
    }
}

/// A stored matrix as symmetric codes and scales.
struct SymmetricCodes {
    var codes: [Int8]
    /// Per row, `cols / group` scales (grouped formats) or one (int8).
    var scales: [Float]
    var scalesPerRow: Int

    /// Decodes the codes and scales of a [rows, cols] tensor stored in `format`, which
    /// `PackedScheme.holding` accepts.
    init(_ src: UnsafeRawBufferPointer, format: WeightFormat, rows: Int, cols: Int) throws {
        guard let rowBytes = format.rowBytes(cols: cols), src.count == rowBytes * rows, PackedScheme.holding(format) != nil else {
            throw FormatError("compressed-tensors export: a \(rows)x\(cols) \(format.rawValue) tensor has no integer codes to pack")
        }
        codes = [Int8](repeating: 0, count: rows * cols)
        func f16(_ at: Int) -> Float { Float(Float16(bitPattern: UInt16(src[at]) | UInt16(src[at + 1]) << 8)) }
        if format == .int8 {
            scalesPerRow = 1
            scales = (0..<rows).map { r in src.loadUnaligned(fromByteOffset: r * rowBytes, as: Float.self) }
            for r in 0..<rows {
                for j in 0..<cols { codes[r * cols + j] = Int8(bitPattern: src[r * rowBytes + 4 + j]) }
            }
            return
        }
        let t = format.traits, bits = Int(t.bits), group = Int(t.group), header = Int(t.header)
        scalesPerRow = cols / group
        scales = [Float](repeating: 0, count: rows * scalesPerRow)
        let groupBytes = header + group * bits / 8, mid = 1 << (bits - 1)
        for r in 0..<rows {
            for g in 0..<scalesPerRow {
                let base = r * rowBytes + g * groupBytes
                scales[r * scalesPerRow + g] = f16(base)
                for k in 0..<(group / 32) {
                    let out = r * cols + g * group + 32 * k
                    if bits == 4 {
                        // Byte i holds weight i in its low nibble and weight i + 16 in its high one.
                        let nib = base + header + 16 * k
                        for i in 0..<16 {
                            codes[out + i] = Int8(Int(src[nib + i] & 0xf) - 8)
                            codes[out + i + 16] = Int8(Int(src[nib + i] >> 4) - 8)
                        }
                    } else {
                        // 8 bytes of low 2 bits (weight 8k+i in bits 2k..2k+1 of byte i), then for
                        // 3 bits a 32-bit word of high bits (docs/quantization.md).
                        let blk = base + header + k * 4 * bits
                        for j in 0..<32 {
                            var c = Int(src[blk + (j & 7)] >> (2 * (j >> 3))) & 3
                            if bits == 3 { c |= (Int(src[blk + 8 + (j >> 3)] >> (j & 7)) & 1) << 2 }
                            codes[out + j] = Int8(c - mid)
                        }
                    }
                }
            }
        }
    }

    init(codes: [Int8], scales: [Float], scalesPerRow: Int) {
        self.codes = codes
        self.scales = scales
        self.scalesPerRow = scalesPerRow
    }

    /// Zero codes and zero scales: a pruned expert kept in place.
    init(zerosRows rows: Int, cols: Int, scheme: PackedScheme) {
        codes = [Int8](repeating: 0, count: rows * cols)
        scalesPerRow = scheme.group.map { cols / $0 } ?? 1
        scales = [Float](repeating: 0, count: rows * scalesPerRow)
    }

    /// The scales for `scheme`'s group: each repeated when the scheme's group is smaller.
    func scales(for scheme: PackedScheme, cols: Int) -> [Float] {
        let per = scheme.group.map { cols / $0 } ?? 1
        guard per != scalesPerRow else { return scales }
        let repeatCount = per / scalesPerRow
        return scales.flatMap { repeatElement($0, count: repeatCount) }
    }

    /// `weight_packed`: per row, ceil(cols · bits / 32) little-endian int32 words; code q is
    /// stored as q + 2^(bits−1) at bit bits·j of the row (the tail past cols is zero).
    func packed(rows: Int, cols: Int, bits: Int) -> [UInt8] {
        let words = (cols * bits + 31) / 32, offset = 1 << (bits - 1), mask = (1 << bits) - 1
        var out = [UInt8](repeating: 0, count: rows * words * 4)
        for r in 0..<rows {
            for j in 0..<cols {
                let v = UInt32((Int(codes[r * cols + j]) + offset) & mask), bit = j * bits
                let byte = r * words * 4 + bit / 8
                // bits is 4 or 8: a value never straddles a byte.
                out[byte] |= UInt8(truncatingIfNeeded: v << UInt32(bit % 8))
            }
        }
        return out
    }
}
