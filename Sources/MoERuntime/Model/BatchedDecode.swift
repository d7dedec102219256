import Foundation

/// One decoding step for many independent sequences at once (continuous batching).
///
/// Row b of the batch is token `tokens[b]` placed after whatever `caches[b]` holds, so every row
/// has its own position. Attention runs per sequence against its own cache; every linear layer,
/// the router and the experts run on the stacked rows, so each weight matrix is read once per step
/// for the whole batch instead of once per sequence.
extension ErnieModel {
    /// Returns logits [B, vocab], row b for sequence b. Each cache grows by one position.
    public func decodeBatch(tokens: [Int32], caches: [KVCache]) throws -> [Float] {
        let c = config
        let count = tokens.count
        guard count == caches.count else {
            throw RuntimeError("decodeBatch: \(count) tokens for \(caches.count) caches")
        }
        guard count > 0 else { return [] }
        guard Set(caches.map(ObjectIdentifier.init)).count == count else {
            throw RuntimeError("decodeBatch: the same cache appears twice in one batch")
        }
        for cache in caches where cache.count + 1 > cache.capacity {
            throw RuntimeError("context overflow: \(cache.count + 1) tokens exceed the limit of \(cache.capacity)")
        }
        for cache in caches where cache.layerCount != c.numHiddenLayers || cache.kvDim != c.numKeyValueHeads * c.headDim {
            throw RuntimeError("decodeBatch: a cache was made for a different model")
        }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= c.vocabSize }) {
            throw RuntimeError("token id \(bad) is outside the vocabulary (0..<\(c.vocabSize))")
        }
        let h = c.hiddenSize
        let eps = Float(c.rmsNormEps)
        var x = [Float](repeating: 0, count: count * h)
        var normed = [Float](repeating: 0, count: count * h)
        var branch = [Float](repeating: 0, count: count * h)
        x.withUnsafeMutableBufferPointer { xb in
            for (b, token) in tokens.enumerated() { embedding.copyRow(Int(token), into: xb.baseAddress! + b * h) }
        }
        let rotary = RotaryTable(positions: caches.map(\.count), inverseFrequencies: rotaryFrequencies)
        for (index, layer) in layers.enumerated() {
            layer.apply(&x, normed: &normed, branch: &branch, count: count, eps: eps, observer: nil) { input, output in
                layer.attention.decodeBatch(input, caches: caches, layer: index, rotary: rotary, into: output)
            }
        }
        for cache in caches { cache.commit(1) }
        var logits = [Float](repeating: 0, count: count * c.vocabSize)
        x.withUnsafeMutableBufferPointer { xb in
            let start = xb.baseAddress!
            Ops.rmsNorm(start, weight: finalNorm, eps: eps, count: count, into: start)
            logits.withUnsafeMutableBufferPointer { lmHead(start, count: count, into: $0.baseAddress!) }
        }
        try Self.checkFinite(logits, vocabSize: c.vocabSize, firstPosition: 0, unit: "batch row")
        return logits
    }
}

extension Attention {
    /// x [B, hidden] → y [B, hidden]: row b is one new token of the sequence cached in `caches[b]`,
    /// rotated by row b of `rotary`. Appends each row's key and value to its cache (the caller
    /// commits after the last layer).
    func decodeBatch(_ x: UnsafePointer<Float>, caches: [KVCache], layer: Int, rotary: RotaryTable,
                     into y: UnsafeMutablePointer<Float>) {
        let count = caches.count
        let qDim = heads * headDim, kvDim = kvHeads * headDim
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count * (2 * qDim + 2 * kvDim))
        defer { buffer.deallocate() }
        let qs = buffer, ks = qs + count * qDim, vs = ks + count * kvDim, context = vs + count * kvDim
        project(x, count: count, q: qs, k: ks, v: vs)
        // Each (row, key/value head) pair rotates its query heads and key, and appends its key
        // and value, on the thread that then attends with them. The new position is appended
        // there but not committed until the last layer.
        let group = heads / kvHeads
        attend(caches.enumerated().map { b, cache in
            AttentionRow(query: qs + b * qDim, cache: cache, layer: layer, first: firstVisible(cache.count),
                         visible: cache.count + 1, out: context + b * qDim)
        }) { b, g in
            prepareHeads(qs + b * qDim + g * group * headDim, count: 1, headsIn: group, norm: queryNorm, rotary: rotary, firstRow: b)
            prepareHeads(ks + b * kvDim + g * headDim, count: 1, headsIn: 1, norm: keyNorm, rotary: rotary, firstRow: b)
            caches[b].append(layer: layer, head: g, rows: 1, keys: ks + b * kvDim, values: vs + b * kvDim)
        }
        o(context, count: count, into: y)
    }
}
