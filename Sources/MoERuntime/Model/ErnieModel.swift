import Foundation
import MoEFormat
import MoEKernels

/// An ERNIE 4.5 causal language model (MoE or dense), ready to run on f32 activations.
/// Weights come from any `WeightSource`; the forward pass is the same for all of them.
public final class ErnieModel: @unchecked Sendable {
    public let config: ModelConfig
    let embedding: any MatrixOperator
    let layers: [DecoderLayer]
    let finalNorm: [Float]
    let lmHead: Linear
    let rotaryFrequencies: [Float]
    /// How `makeCache` stores keys and values: f16 when the attention weights are quantized
    /// (their rounding error is far above f16's, and f16 halves what attention reads per
    /// position), f32 when the model runs at full precision (a checkpoint, an f32, bf16 or f16
    /// bundle), so it follows transformers as closely as before.
    public let cachePrecision: KVCache.Precision

    /// `cachePrecision` overrides the precision chosen from the attention weights.
    public init(weights: WeightSource, cachePrecision: KVCache.Precision? = nil) throws {
        let c = weights.config
        config = c
        let names = c.names
        embedding = try weights.matrix(names.embedding, rows: c.vocabSize, cols: c.hiddenSize)
        layers = try (0..<c.numHiddenLayers).map { try DecoderLayer(weights: weights, layer: $0) }
        finalNorm = try weights.vector(names.finalNorm, count: c.hiddenSize)
        let head = c.tieWordEmbeddings
            ? embedding
            : try weights.matrix(names.lmHead, rows: c.vocabSize, cols: c.hiddenSize)
        rotaryFrequencies = RotaryTable.inverseFrequencies(c)
        let keyFormat = layers.first?.attention.k.kernel?.format
        let fullPrecision = keyFormat.map(FloatProduct.handles) ?? true
        self.cachePrecision = cachePrecision ?? (fullPrecision ? .f32 : .f16)
        lmHead = Linear(weight: head, bias: c.hasLMHeadBias ? try weights.vector(names.lmHeadBias, count: c.vocabSize) : nil)
    }

    /// Runs `tokens` after whatever `cache` already holds and returns logits [T, vocab]
    /// (only the last row when `lastOnly`).
    public func forward(_ tokens: [Int32], cache: KVCache, lastOnly: Bool = false,
                        observer: RoutingObserver? = nil) throws -> [Float] {
        let c = config
        let count = tokens.count
        guard count > 0 else { return [] }
        guard cache.count + count <= cache.capacity else {
            throw RuntimeError("context overflow: \(cache.count + count) tokens exceed the limit of \(cache.capacity)")
        }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= c.vocabSize }) {
            throw RuntimeError("token id \(bad) is outside the vocabulary (0..<\(c.vocabSize))")
        }
        let h = c.hiddenSize
        var x = [Float](repeating: 0, count: count * h)
        var normed = [Float](repeating: 0, count: count * h)
        var branch = [Float](repeating: 0, count: count * h)
        x.withUnsafeMutableBufferPointer { xb in
            for (t, token) in tokens.enumerated() { embedding.copyRow(Int(token), into: xb.baseAddress! + t * h) }
        }
        let rotary = RotaryTable(positions: Array(cache.count..<(cache.count + count)), inverseFrequencies: rotaryFrequencies)
        for (index, layer) in layers.enumerated() {
            layer.apply(&x, normed: &normed, branch: &branch, count: count, eps: Float(c.rmsNormEps),
                        observer: observer) { input, output in
                layer.attention(input, count: count, layer: index, cache: cache, rotary: rotary, into: output,
                                contextInput: observer.inputs(layer: index, site: .attentionOutput, count: count))
            }
        }
        cache.commit(count)
        let rows = lastOnly ? 1 : count
        return try headLogits(&x, fromRow: count - rows, count: rows, firstPosition: cache.count - rows)
    }

    /// The final norm (in place) and lm_head over `count` hidden states of x from row
    /// `fromRow`: logits [count, vocab]. `firstPosition` names the first row in errors.
    func headLogits(_ x: inout [Float], fromRow: Int, count: Int, firstPosition: Int) throws -> [Float] {
        let c = config, h = c.hiddenSize
        var logits = [Float](repeating: 0, count: count * c.vocabSize)
        x.withUnsafeMutableBufferPointer { xb in
            let start = xb.baseAddress! + fromRow * h
            Ops.rmsNorm(start, weight: finalNorm, eps: Float(c.rmsNormEps), count: count, into: start)
            logits.withUnsafeMutableBufferPointer { lmHead(start, count: count, into: $0.baseAddress!) }
        }
        try Self.checkFinite(logits, vocabSize: c.vocabSize, firstPosition: firstPosition)
        return logits
    }

    /// NaN or infinite logits come from broken weights (a corrupted file, an overflowing
    /// conversion); they are reported where they appear instead of being sampled from.
    static func checkFinite(_ logits: [Float], vocabSize: Int, firstPosition: Int, unit: String = "position") throws {
        guard let bad = logits.firstIndex(where: { !$0.isFinite }) else { return }
        throw RuntimeError("the model produced a non-finite logit (\(logits[bad])) at \(unit) \(firstPosition + bad / max(vocabSize, 1)): "
                           + "its weights are probably corrupted or out of range")
    }

    /// Logits of a whole sequence from an empty cache.
    public func logits(_ tokens: [Int32]) throws -> [Float] {
        try forward(tokens, cache: makeCache(capacity: tokens.count))
    }

    /// An empty cache for up to `capacity` positions (the model's maximum when nil), storing
    /// keys and values at `precision` (`cachePrecision` when nil).
    public func makeCache(capacity: Int? = nil, precision: KVCache.Precision? = nil) -> KVCache {
        KVCache(config: config, capacity: capacity, precision: precision ?? cachePrecision)
    }
}

struct DecoderLayer: Sendable {
    /// One pre-norm residual block over `count` rows of x:
    /// x += attention(norm(x)); x += mlp(norm(x)). `attend(normed, out)` runs the attention
    /// (one cached sequence, or one row per sequence when batching); the buffers are scratch.
    /// `observer` sees the routing and the inputs of the products.
    func apply(_ x: inout [Float], normed: inout [Float], branch: inout [Float], count: Int, eps: Float,
               observer: RoutingObserver?,
               attend: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
        let n = x.count
        x.withUnsafeMutableBufferPointer { xb in
            normed.withUnsafeMutableBufferPointer { nb in
                branch.withUnsafeMutableBufferPointer { bb in
                    let xp = xb.baseAddress!, np = nb.baseAddress!, bp = bb.baseAddress!
                    Ops.rmsNorm(xp, weight: inputNorm, eps: eps, count: count, into: np)
                    observer?.observeInputs(layer: index, site: .attention, rows: np, count: count, width: inputNorm.count)
                    attend(np, bp)
                    for i in 0..<n { xp[i] += bp[i] }
                    Ops.rmsNorm(xp, weight: postAttentionNorm, eps: eps, count: count, into: np)
                    switch mlp {
                    case .dense(let feedForward):
                        observer?.observeInputs(layer: index, site: .denseMLP, rows: np, count: count, width: inputNorm.count)
                        feedForward(np, count: count, into: bp,
                                    downInput: observer.inputs(layer: index, site: .denseMLPDown, count: count))
                    case .moe(let moe): moe(np, count: count, into: bp, observer: observer)
                    }
                    for i in 0..<n { xp[i] += bp[i] }
                }
            }
        }
    }

    enum MLP: Sendable {
        case dense(FeedForward)
        case moe(MoEBlock)
    }

    /// Position in the model (0-based).
    let index: Int
    let inputNorm: [Float]
    let postAttentionNorm: [Float]
    let attention: Attention
    let mlp: MLP

    init(weights: WeightSource, layer: Int) throws {
        let c = weights.config, names = c.names
        index = layer
        inputNorm = try weights.vector(names.inputNorm(layer), count: c.hiddenSize)
        postAttentionNorm = try weights.vector(names.postAttentionNorm(layer), count: c.hiddenSize)
        attention = try Attention(weights: weights, layer: layer)
        mlp = c.isMoELayer(layer)
            ? .moe(try MoEBlock(weights: weights, layer: layer))
            : .dense(try FeedForward(weights: weights, name: { names.denseMLP(layer, $0, bias: $1) },
                                     width: c.intermediateSize, bias: c.mlpBias))
    }
}

/// A failure while running a model (bad token ids, context overflow).
public struct RuntimeError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension ErnieModel {
    /// Bytes of weights in memory.
    public var weightBytes: Int {
        var total = embedding.storageBytes + (config.tieWordEmbeddings ? 0 : lmHead.weight.storageBytes)
        for layer in layers { total += layer.weightBytes(activeOnly: false) }
        return total
    }

    /// Bytes a decoded token must read: every non-expert weight, `moe_k` routed experts per
    /// MoE layer, one embedding row and the lm_head.
    public var activeWeightBytesPerToken: Int {
        var total = lmHead.weight.storageBytes + embedding.storageBytes / max(config.vocabSize, 1)
        for layer in layers { total += layer.weightBytes(activeOnly: true) }
        return total
    }
}

extension DecoderLayer {
    func weightBytes(activeOnly: Bool) -> Int {
        let a = attention
        var total = [a.q, a.k, a.v, a.o].reduce(0) { $0 + $1.weight.storageBytes }
        switch mlp {
        case .dense(let f): total += f.weightBytes
        case .moe(let m):
            total += m.router.storageBytes + (m.shared?.weightBytes ?? 0)
            let experts = m.experts.reduce(0) { $0 + $1.weightBytes }
            total += activeOnly ? experts * m.topK / max(m.experts.count, 1) : experts
        }
        return total
    }
}

extension FeedForward {
    var weightBytes: Int { gate.weight.storageBytes + up.weight.storageBytes + down.weight.storageBytes }
}
