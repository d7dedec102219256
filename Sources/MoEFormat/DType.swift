/// Element types moepack reads from checkpoints.
public enum DType: String, Sendable, Codable, CaseIterable {
    case f32 = "F32"
    case bf16 = "BF16"
    case f16 = "F16"

    public var byteSize: Int {
        switch self {
        case .f32: 4
        case .bf16, .f16: 2
        }
    }

    /// Upcasts `count` elements starting at `source` into `destination` as f32.
    public func convertToFloat(_ source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>) {
        switch self {
        case .f32:
            for i in 0..<count {
                destination[i] = source.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
            }
        case .bf16:
            for i in 0..<count {
                let bits = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                destination[i] = Float(bitPattern: UInt32(bits) << 16)
            }
        case .f16:
            for i in 0..<count {
                let bits = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                destination[i] = Float(Float16(bitPattern: bits))
            }
        }
    }

    /// Rounds `values` to this type (to nearest, ties to even) as little-endian bytes.
    public func encode(_ values: [Float]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(values.count * byteSize)
        for v in values {
            let bits: UInt32
            switch self {
            case .f32: bits = v.bitPattern
            case .f16: bits = UInt32(Float16(v).bitPattern)
            case .bf16:
                let b = v.bitPattern
                bits = v.isNaN ? (b >> 16) | 0x40 : (b &+ 0x7fff &+ ((b >> 16) & 1)) >> 16
            }
            for k in 0..<byteSize { out.append(UInt8(truncatingIfNeeded: bits >> (8 * k))) }
        }
        return out
    }
}
