import Foundation
import MoEKernels

/// Small numeric building blocks shared by the layers.
enum Ops {
    /// RMSNorm over each row of x [T, n], written to y (may alias x).
    static func rmsNorm(_ x: UnsafePointer<Float>, weight: [Float], eps: Float, count: Int, into y: UnsafeMutablePointer<Float>) {
        let n = weight.count
        weight.withUnsafeBufferPointer { w in
            for t in 0..<count {
                let row = x + t * n, out = y + t * n
                // Eight running sums, so the sum of squares vectorises (one serial sum would not).
                var partial = SIMD8<Float>()
                var i = 0
                let raw = UnsafeRawPointer(row)
                while i + 8 <= n {
                    let v = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                    partial += v * v
                    i += 8
                }
                var sum = partial.sum()
                while i < n {
                    sum += row[i] * row[i]
                    i += 1
                }
                let scale = 1 / (sum / Float(n) + eps).squareRoot()
                for i in 0..<n { out[i] = w[i] * (row[i] * scale) }
            }
        }
    }

    /// gate ← silu(gate) · up, elementwise (SIMD exp on the AVX2 path).
    static func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        moe_swiglu(gate, up, Int64(count))
    }

    /// Indices of the `count` largest values, largest first; equal values in index order (the
    /// order a stable descending sort gives), by insertion into a short list. The router's top-k
    /// choice and the alternatives of a token's log-probability.
    static func topIndices<C: RandomAccessCollection>(_ values: C, count: Int) -> [Int]
        where C.Element == Float, C.Index == Int {
        var top: [Int] = []
        top.reserveCapacity(count + 1)
        for i in values.indices {
            // Not above the last of a full list: skip without searching (most of a vocabulary).
            if top.count == count, count > 0, !(values[i] > values[top[count - 1]]) { continue }
            var at = top.count
            while at > 0 && values[top[at - 1]] < values[i] { at -= 1 }
            guard at < count else { continue }
            top.insert(i, at: at)
            if top.count > count { top.removeLast() }
        }
        return top
    }

    /// In-place softmax of n values.
    static func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int) {
        var maxValue = -Float.infinity
        for i in 0..<n { maxValue = max(maxValue, x[i]) }
        var sum: Float = 0
        for i in 0..<n {
            x[i] = expf(x[i] - maxValue)
            sum += x[i]
        }
        let inv = 1 / sum
        for i in 0..<n { x[i] *= inv }
    }
}
