import MoEKernels
import Foundation
import MoEFormat

/// Grouped-query self-attention with a rotary embedding in the family's style, optional
/// per-head RMSNorm of queries and keys before it, and an optional sliding window.
struct Attention: Sendable {
    let q, k, v, o: Linear
    let heads: Int
    let kvHeads: Int
    let headDim: Int
    let rotaryStyle: RotaryStyle
    /// RMSNorm weights [headDim] applied to every query / key head (nil: no q/k norm).
    let queryNorm: [Float]?
    let keyNorm: [Float]?
    let normEps: Float
    /// Positions a query sees, itself included (nil: all before it).
    let window: Int?

    init(weights: WeightSource, layer: Int) throws {
        let c = weights.config, names = c.names
        heads = c.numAttentionHeads
        kvHeads = c.numKeyValueHeads
        headDim = c.headDim
        rotaryStyle = c.rotaryStyle
        normEps = Float(c.rmsNormEps)
        window = c.slidingWindow
        let h = c.hiddenSize
        func linear(_ p: AttentionProjection, _ rows: Int, _ cols: Int) throws -> Linear {
            Linear(weight: try weights.matrix(names.attention(layer, p, bias: false), rows: rows, cols: cols),
                   bias: c.attentionBias ? try weights.vector(names.attention(layer, p, bias: true), count: rows) : nil)
        }
        q = try linear(.q, heads * headDim, h)
        k = try linear(.k, kvHeads * headDim, h)
        v = try linear(.v, kvHeads * headDim, h)
        o = try linear(.o, h, heads * headDim)
        queryNorm = c.qkNorm ? try weights.vector(names.queryNorm(layer), count: headDim) : nil
        keyNorm = c.qkNorm ? try weights.vector(names.keyNorm(layer), count: headDim) : nil
    }

    /// The first cached position a query at `position` sees.
    func firstVisible(_ position: Int) -> Int { window.map { max(0, position + 1 - $0) } ?? 0 }

    /// Normalises (with `norm`, when the family has q/k norms) and rotates each head of
    /// `x` [T, n·headDim] in place; token t uses row firstRow + t of `rotary`.
    func prepareHeads(_ x: UnsafeMutablePointer<Float>, count: Int, headsIn n: Int, norm: [Float]?, rotary: RotaryTable,
                      firstRow: Int = 0) {
        if let norm { Ops.rmsNorm(x, weight: norm, eps: normEps, count: count * n, into: x) }
        applyRotary(x, count: count, headsIn: n, rotary: rotary, firstRow: firstRow)
    }

    /// Rotates each head of `x` [T, n·headDim] in place; token t uses row firstRow + t of `rotary`.
    func applyRotary(_ x: UnsafeMutablePointer<Float>, count: Int, headsIn n: Int, rotary: RotaryTable, firstRow: Int = 0) {
        let half = headDim / 2
        for t in 0..<count {
            let cosines = rotary.cosines(row: firstRow + t), sines = rotary.sines(row: firstRow + t)
            for head in 0..<n {
                let p = x + t * n * headDim + head * headDim
                // Interleaved: (2i, 2i+1) rotate together; rotate-half: (i, i + half).
                let (stride, offset) = rotaryStyle == .interleaved ? (2, 1) : (1, half)
                for i in 0..<half {
                    let a = p[stride * i], b = p[stride * i + offset], c = cosines[i], s = sines[i]
                    p[stride * i] = a * c - b * s
                    p[stride * i + offset] = b * c + a * s
                }
            }
        }
    }

    /// x [T, hidden] → y [T, hidden], reading and extending the cache of `layer`; token t sits at
    /// row t of `rotary`. `contextInput` sees the rows o_proj reads (and their width).
    func callAsFunction(_ x: UnsafePointer<Float>, count: Int, layer: Int, cache: KVCache, rotary: RotaryTable,
                        into y: UnsafeMutablePointer<Float>, contextInput: ((UnsafePointer<Float>, Int) -> Void)? = nil) {
        let qDim = heads * headDim, kvDim = kvHeads * headDim
        let start = cache.count
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count * (2 * qDim + 2 * kvDim))
        defer { buffer.deallocate() }
        let qs = buffer, ks = qs + count * qDim, vs = ks + count * kvDim, context = vs + count * kvDim
        project(x, count: count, q: qs, k: ks, v: vs)
        prepareHeads(qs, count: count, headsIn: heads, norm: queryNorm, rotary: rotary)
        prepareHeads(ks, count: count, headsIn: kvHeads, norm: keyNorm, rotary: rotary)
        cache.append(layer: layer, rows: count, keys: ks, values: vs)
        attend((0..<count).map { t in
            AttentionRow(query: qs + t * qDim, cache: cache, layer: layer, first: firstVisible(start + t),
                         visible: start + t + 1, out: context + t * qDim)
        })
        contextInput?(context, qDim)
        o(context, count: count, into: y)
    }

    /// q, k and v of x [T, hidden] as one kernel call.
    func project(_ x: UnsafePointer<Float>, count: Int, q qs: UnsafeMutablePointer<Float>,
                 k ks: UnsafeMutablePointer<Float>, v vs: UnsafeMutablePointer<Float>) {
        var batch = LinearBatch()
        batch.add(q, x, count: count, into: qs)
        batch.add(k, x, count: count, into: ks)
        batch.add(v, x, count: count, into: vs)
        batch.run()
    }

    /// One query row (all heads) against the first `visible` positions of a cache's layer.
    struct AttentionRow {
        let query: UnsafePointer<Float>
        let cache: KVCache
        let layer: Int
        /// Positions first..<visible are attended to.
        let first: Int
        let visible: Int
        let out: UnsafeMutablePointer<Float>
    }

    /// out[head] = softmax(K·q / √d) · V for every row and head. The heads that share a
    /// key/value head run together (each cached position is read once per group), and
    /// (row, group) pairs are spread over the kernel pool once there is enough work.
    /// `prepare(row, group)`, when given, runs on the pair's thread just before its attention
    /// (the batched step rotates and caches the pair's new key there).
    func attend(_ rows: [AttentionRow], prepare: ((Int, Int) -> Void)? = nil) {
        let group = heads / kvHeads
        let pairs = rows.count * kvHeads
        guard pairs > 0 else { return }
        let longest = rows.reduce(0) { max($0, $1.visible - $1.first) }
        let work = rows.reduce(0) { $0 + $1.visible - $1.first } * heads * headDim
        let chunks = work >= 1 << 16 ? min(pairs, 4 * KernelConfig.threads) : 1
        let scale = 1 / Float(headDim).squareRoot()
        KernelPool.parallelFor(chunks) { chunk in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: group * longest)
            defer { scores.deallocate() }
            for pair in (pairs * chunk / chunks)..<(pairs * (chunk + 1) / chunks) {
                let row = rows[pair / kvHeads], g = pair % kvHeads
                prepare?(pair / kvHeads, g)
                let q = row.query + g * group * headDim, out = row.out + g * group * headDim
                let k = row.cache.keys(layer: row.layer, head: g), v = row.cache.values(layer: row.layer, head: g)
                let visible = Int64(row.visible - row.first), stride = Int64(headDim), skip = row.first * headDim
                switch row.cache.precision {
                case .f32:
                    moe_attend_group(q, k.assumingMemoryBound(to: Float.self) + skip, v.assumingMemoryBound(to: Float.self) + skip,
                                     visible, stride, Int32(headDim), Int32(group), scale, scores, out)
                case .f16:
                    moe_attend_group_f16(q, k.assumingMemoryBound(to: UInt16.self) + skip,
                                         v.assumingMemoryBound(to: UInt16.self) + skip,
                                         visible, stride, Int32(headDim), Int32(group), scale, scores, out)
                }
            }
        }
    }
}

/// The rotary angles for the rows of one forward call: cos and sin of position × inverse
/// frequency (f32, as transformers computes them), worked out once and shared by every layer.
final class RotaryTable {
    let half: Int
    /// Per row: `half` cosines, then `half` sines.
    private let values: UnsafeMutablePointer<Float>

    /// Inverse frequencies, headDim/2 values.
    static func inverseFrequencies(_ c: ModelConfig) -> [Float] {
        let base = Float(c.ropeTheta), dim = c.headDim
        return (0..<(dim / 2)).map { i in 1 / powf(base, Float(2 * i) / Float(dim)) }
    }

    init(positions: [Int], inverseFrequencies: [Float]) {
        half = inverseFrequencies.count
        values = .allocate(capacity: max(positions.count * 2 * half, 1))
        for (row, position) in positions.enumerated() {
            let cosines = values + row * 2 * half, sines = cosines + half
            for (i, frequency) in inverseFrequencies.enumerated() {
                let angle = Float(position) * frequency
                cosines[i] = cosf(angle)
                sines[i] = sinf(angle)
            }
        }
    }

    deinit { values.deallocate() }

    func cosines(row: Int) -> UnsafePointer<Float> { UnsafePointer(values + row * 2 * half) }
    func sines(row: Int) -> UnsafePointer<Float> { UnsafePointer(values + row * 2 * half + half) }
}
