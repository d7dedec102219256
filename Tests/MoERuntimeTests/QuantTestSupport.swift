import MoEFormat
import MoEKernels
@testable import MoERuntime

/// Deterministic pseudo-random floats (64-bit LCG), so failures reproduce.
struct TestRandom {
    var state: UInt64

    init(seed: UInt64) { state = seed &* 6364136223846793005 &+ 1442695040888963407 }

    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(state >> 40) / Float(1 << 24)  // [0, 1)
    }

    /// Roughly weight-like values: uniform in [-scale, scale) with a few outliers.
    mutating func weights(_ n: Int, scale: Float = 0.1) -> [Float] {
        (0..<n).map { i in
            let v = (next() * 2 - 1) * scale
            return i % 97 == 13 ? v * 8 : v
        }
    }
}

enum QuantTest {
    static let intFormats: [WeightFormat] = [.int8, .int4g32, .int4g64, .int4g128, .int4g32a, .int4g64a, .int4g128a]

    /// A column count that exercises tails for formats without a group constraint.
    static func oddCols(for f: WeightFormat) -> Int { f.groupSize.map { 3 * $0 } ?? 333 }

    static func f16(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Float {
        moe_f16_to_f32(UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8)
    }

    static func f32(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Float {
        Float(bitPattern: UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8
            | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24)
    }

    /// Per-element scale that bounds the rounding error (|w - deq| <= scale / 2), read from the stored bytes.
    static func elementScales(_ q: QuantizedMatrix) throws -> [Float] {
        var out = [Float](repeating: 0, count: q.rows * q.cols)
        let rb = try q.format.rowByteCount(cols: q.cols)
        for r in 0..<q.rows {
            let base = r * rb
            if q.format == .int8 {
                let s = f32(q.bytes, at: base)
                for c in 0..<q.cols { out[r * q.cols + c] = s }
            } else if let g = q.format.groupSize {
                let gb = (q.format.isAsymmetric ? 4 : 2) + g / 2
                for c in 0..<q.cols { out[r * q.cols + c] = f16(q.bytes, at: base + (c / g) * gb) }
            }
        }
        return out
    }

    /// Steps of the activation quantization, per element: int4 weights meet
    /// int8 activations (max |x| / 127 per 32 values), int8 weights int16
    /// activations (max |x| / 32767 per 1024 values).
    static func activationSteps(_ x: [Float], cols: Int, format: WeightFormat) -> [Float] {
        let (block, levels): (Int, Float) = format == .int8 ? (1024, 32767) : (32, 127)
        var out = [Float](repeating: 0, count: x.count)
        for t in 0..<(x.count / cols) {
            var c0 = 0
            while c0 < cols {
                let end = min(c0 + block, cols)
                let amax = x[(t * cols + c0)..<(t * cols + end)].reduce(0) { max($0, abs($1)) }
                for c in c0..<end { out[t * cols + c] = amax / levels }
                c0 = end
            }
        }
        return out
    }
}
