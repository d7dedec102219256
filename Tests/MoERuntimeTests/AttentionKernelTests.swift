import MoEKernels
import MoERuntime
import XCTest

/// moe_attend_group against attention written out in double precision, on every kernel path.
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
            // 8-position and 64-position blocks.
            for (hd, group, visible) in [(64, 4, 1), (64, 4, 8), (64, 4, 300), (40, 2, 37), (128, 1, 100), (72, 3, 65),
                                         (64, 65, 9)] {
                let kvHeads = 2, stride = kvHeads * hd
                let q = (0..<(group * hd)).map { _ in random() }
                let k = (0..<(visible * stride)).map { _ in random() }
                let v = (0..<(visible * stride)).map { _ in random() }
                let scale = 1 / Float(hd).squareRoot()
                var scores = [Float](repeating: .nan, count: group * visible)
                var out = [Float](repeating: .nan, count: group * hd)
                // The second key/value head of each cached row (offset hd), as the model addresses it.
                k.withUnsafeBufferPointer { kb in
                    v.withUnsafeBufferPointer { vb in
                        moe_attend_group(q, kb.baseAddress! + hd, vb.baseAddress! + hd, Int64(visible), Int64(stride),
                                         Int32(hd), Int32(group), scale, &scores, &out)
                    }
                }
                let expected = reference(q: q, k: Array(k.dropFirst(hd)) + [Float](repeating: 0, count: hd),
                                         v: Array(v.dropFirst(hd)) + [Float](repeating: 0, count: hd),
                                         visible: visible, stride: stride, hd: hd, group: group, scale: scale)
                for i in 0..<out.count {
                    XCTAssertEqual(out[i], expected[i], accuracy: 2e-5 * (1 + abs(expected[i])),
                                   "\(path.name) hd \(hd) group \(group) visible \(visible) at \(i)")
                }
            }
        }
    }
}
