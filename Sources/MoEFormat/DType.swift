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
}
