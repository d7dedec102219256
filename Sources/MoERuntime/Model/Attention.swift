import CBLAS
import Foundation
import MoEFormat

/// Grouped-query self-attention with ERNIE's interleaved rotary embedding (pairs 2i, 2i+1).
struct Attention: Sendable {
    let q, k, v, o: Linear
    let heads: Int
    let kvHeads: Int
    let headDim: Int
    /// inverse frequencies, headDim/2 values, computed in f32 as transformers does.
    let inverseFrequencies: [Float]

    init(weights: WeightSource, layer: Int) throws {
        let c = weights.config
        let p = "model.layers.\(layer).self_attn"
        heads = c.numAttentionHeads
        kvHeads = c.numKeyValueHeads
        headDim = c.headDim
        let h = c.hiddenSize
        func linear(_ name: String, _ rows: Int, _ cols: Int) throws -> Linear {
            Linear(weight: try weights.matrix("\(p).\(name).weight", rows: rows, cols: cols),
                   bias: c.useBias ? try weights.vector("\(p).\(name).bias", count: rows) : nil)
        }
        q = try linear("q_proj", heads * headDim, h)
        k = try linear("k_proj", kvHeads * headDim, h)
        v = try linear("v_proj", kvHeads * headDim, h)
        o = try linear("o_proj", h, heads * headDim)
        let base = Float(c.ropeTheta), dim = c.headDim
        inverseFrequencies = (0..<(dim / 2)).map { i in 1 / powf(base, Float(2 * i) / Float(dim)) }
    }

    /// Rotates each head of `x` [T, n·headDim] in place; token t sits at position start + t.
    func applyRotary(_ x: UnsafeMutablePointer<Float>, count: Int, headsIn n: Int, start: Int) {
        let half = headDim / 2
        for t in 0..<count {
            let position = Float(start + t)
            for i in 0..<half {
                let angle = position * inverseFrequencies[i]
                let c = cosf(angle), s = sinf(angle)
                for head in 0..<n {
                    let p = x + t * n * headDim + head * headDim + 2 * i
                    let a = p[0], b = p[1]
                    p[0] = a * c - b * s
                    p[1] = b * c + a * s
                }
            }
        }
    }

    /// x [T, hidden] → y [T, hidden], reading and extending the cache of `layer`.
    func callAsFunction(_ x: UnsafePointer<Float>, count: Int, layer: Int, cache: KVCache, into y: UnsafeMutablePointer<Float>) {
        let qDim = heads * headDim, kvDim = kvHeads * headDim
        let start = cache.count
        var qs = [Float](repeating: 0, count: count * qDim)
        var ks = [Float](repeating: 0, count: count * kvDim)
        var vs = [Float](repeating: 0, count: count * kvDim)
        qs.withUnsafeMutableBufferPointer { q(x, count: count, into: $0.baseAddress!) }
        ks.withUnsafeMutableBufferPointer { k(x, count: count, into: $0.baseAddress!) }
        vs.withUnsafeMutableBufferPointer { v(x, count: count, into: $0.baseAddress!) }
        qs.withUnsafeMutableBufferPointer { applyRotary($0.baseAddress!, count: count, headsIn: heads, start: start) }
        ks.withUnsafeMutableBufferPointer { applyRotary($0.baseAddress!, count: count, headsIn: kvHeads, start: start) }
        ks.withUnsafeBufferPointer { kb in vs.withUnsafeBufferPointer { vb in cache.append(layer: layer, keys: kb, values: vb) } }

        var context = [Float](repeating: 0, count: count * qDim)
        var scores = [Float](repeating: 0, count: start + count)
        cache.keys[layer].withUnsafeBufferPointer { kc in
            cache.values[layer].withUnsafeBufferPointer { vc in
                qs.withUnsafeBufferPointer { qb in
                    context.withUnsafeMutableBufferPointer { out in
                        scores.withUnsafeMutableBufferPointer { sc in
                            for t in 0..<count {
                                attend(qb.baseAddress! + t * qDim, keys: kc.baseAddress!, values: vc.baseAddress!,
                                       visible: start + t + 1, scores: sc.baseAddress!, into: out.baseAddress! + t * qDim)
                            }
                        }
                    }
                }
            }
        }
        context.withUnsafeBufferPointer { o($0.baseAddress!, count: count, into: y) }
    }

    /// One query row (all heads) against the first `visible` cached positions:
    /// out[head] = softmax(K·q / √d) · V, with each head reading its key/value group.
    func attend(_ query: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                visible: Int, scores: UnsafeMutablePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        let kvDim = kvHeads * headDim
        let scale = 1 / Float(headDim).squareRoot()
        let group = heads / kvHeads
        for head in 0..<heads {
            let g = head / group
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(visible), Int32(headDim), scale,
                        keys + g * headDim, Int32(kvDim), query + head * headDim, 1, 0, scores, 1)
            Ops.softmax(scores, count: visible)
            cblas_sgemv(CblasRowMajor, CblasTrans, Int32(visible), Int32(headDim), 1,
                        values + g * headDim, Int32(kvDim), scores, 1, 0, out + head * headDim, 1)
        }
    }
}
