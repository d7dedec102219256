import MoEKernels
import MoERuntime
import XCTest

/// moe_attend_group (f32 cache) and moe_attend_group_f16 (f16 cache) against attention written
/// out in double precision, on every kernel path.
final class AttentionKernelTests: XCTestCase {
    func reference(q: [Float], k: [Float], v: [Float], visible: Int, stride: Int, hd: Int, group: Int,
                   scale: Float) -> [Float] {
        var out = [Float](repeating: 0, count: group * hd)
        for h in 0..<group {
            let scores = (0..<visible).map { j in
                Double(scale) * (0..<hd).reduce(0.0) { $0 + Double(k[j * stride + $1]) * Double(q[h * hd + $1]) }
            }
            let top = scores.max()!
            let weights = scores.map { exp($0 - top) }
            let total = weights.reduce(0, +)
            for d in 0..<hd {
                out[h * hd + d] = Float((0..<visible).reduce(0.0) { $0 + weights[$1] * Double(v[$1 * stride + d]) } / total)
            }
        }
        return out
    }

    func testMatchesReferenceOnEveryPath() throws {
        var seed: UInt64 = 7
        func random() -> Float {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Float(seed >> 40) / Float(1 << 24) * 4 - 2
        }
        let before = KernelConfig.path
        defer { try? KernelConfig.setPath(before) }
        for path in KernelPath.allCases where path.isAvailable {
            try KernelConfig.setPath(path)
            // head_dim 40 is not a multiple of 8 and 65 heads per group are beyond the SIMD code's
            // limit (the portable code runs); 100 and 300 positions leave a tail after the
            // 8-position and 64-position blocks; head_dim 128, 256 and 264 take several 64-value
            // passes over the values, the last one partial at 264.
            for (hd, group, visible) in [(64, 4, 1), (64, 4, 8), (64, 4, 300), (40, 2, 37), (128, 1, 100), (72, 3, 65),
                                         (64, 65, 9), (128, 2, 300), (256, 2, 300), (264, 1, 20)] {
                let kvHeads = 2, stride = kvHeads * hd
                let q = (0..<(group * hd)).map { _ in random() }
                let k = (0..<(visible * stride)).map { _ in random() }
                let v = (0..<(visible * stride)).map { _ in random() }
                let scale = 1 / Float(hd).squareRoot()
                // The f16 kernel must give attention over the f16-rounded keys and values.
                let k16 = k.map { Float16($0) }, v16 = v.map { Float16($0) }
                for f16 in [false, true] {
                    var scores = [Float](repeating: .nan, count: group * visible)
                    var out = [Float](repeating: .nan, count: group * hd)
                    // The second key/value head of each cached row (offset hd), as the model addresses it.
                    if f16 {
                        let kb = k16.map(\.bitPattern), vb = v16.map(\.bitPattern)
                        moe_attend_group_f16(q, Array(kb.dropFirst(hd)), Array(vb.dropFirst(hd)), Int64(visible),
                                             Int64(stride), Int32(hd), Int32(group), scale, &scores, &out)
                    } else {
                        k.withUnsafeBufferPointer { kb in
                            v.withUnsafeBufferPointer { vb in
                                moe_attend_group(q, kb.baseAddress! + hd, vb.baseAddress! + hd, Int64(visible),
                                                 Int64(stride), Int32(hd), Int32(group), scale, &scores, &out)
                            }
                        }
                    }
                    let keys = f16 ? k16.map { Float($0) } : k, values = f16 ? v16.map { Float($0) } : v
                    let expected = reference(q: q, k: Array(keys.dropFirst(hd)) + [Float](repeating: 0, count: hd),
                                             v: Array(values.dropFirst(hd)) + [Float](repeating: 0, count: hd),
                                             visible: visible, stride: stride, hd: hd, group: group, scale: scale)
                    for i in 0..<out.count {
                        XCTAssertEqual(out[i], expected[i], accuracy: 2e-5 * (1 + abs(expected[i])),
                                       "\(path.name) f16 \(f16) hd \(hd) group \(group) visible \(visible) at \(i)")
                    }
                }
            }
        }
    }

    /// The cache's f32 → f16 conversion rounds like Swift's Float16 (to nearest, ties to even),
    /// including subnormals, overflow to infinity and NaN, on every path and for lengths that
    /// leave a tail after the SIMD blocks.
    func testF16ConversionMatchesFloat16OnEveryPath() throws {
        var values: [Float] = [0, -0, 1, -1, 65504, 65520, 1e6, -1e6, .infinity, -.infinity, 5.96e-8, 2.98e-8, 1e-9,
                               6.1e-5, 1.0009765625, 1.00048828125, 1.00146484375, -2.5e-7]
        var seed: UInt64 = 11
        for _ in 0..<997 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            values.append(Float(bitPattern: UInt32(truncatingIfNeeded: seed >> 32)))
        }
        let before = KernelConfig.path
        defer { try? KernelConfig.setPath(before) }
        for path in KernelPath.allCases where path.isAvailable {
            try KernelConfig.setPath(path)
            var out = [UInt16](repeating: 0, count: values.count)
            moe_f32_to_f16_n(values, &out, Int64(values.count))
            for (v, h) in zip(values, out) {
                if v.isNaN {
                    XCTAssertTrue(Float16(bitPattern: h).isNaN, "\(path.name): NaN stays NaN")
                } else {
                    XCTAssertEqual(h, Float16(v).bitPattern, "\(path.name): f16 of \(v)")
                }
            }
        }
    }
}
