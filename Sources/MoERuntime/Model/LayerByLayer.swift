import Foundation
import MoEFormat

/// Where a model is in a layer-by-layer pass (`ErnieModel.observeLayerByLayer`).
public struct LayerPassProgress: Sendable {
    /// The layer being run (0-based) and the model's layer count.
    public let layer: Int
    public let layers: Int
    /// The window group being run (0-based) and how many there are (one unless the hidden
    /// states of all windows exceed the memory budget).
    public let group: Int
    public let groups: Int
    /// Window tokens through the current layer in all: every group's tokens times the layers.
    public let tokenLayersDone: Int
    public let tokenLayersTotal: Int
    /// Seconds since the pass started.
    public let elapsed: Double

    /// Estimated seconds to the end, from the rate so far (nil before any work is done).
    public var secondsLeft: Double? {
        guard tokenLayersDone > 0 else { return nil }
        return elapsed * Double(tokenLayersTotal - tokenLayersDone) / Double(tokenLayersDone)
    }
}

extension ErnieModel {
    /// Runs every window from an empty cache through the decoder layers, one layer at a time:
    /// all windows of a group pass layer 0, then layer 1, and so on, so each layer's weights are
    /// read from disk once per group and the pages of a finished layer are given back
    /// (`MatrixOperator.releasePages`). Memory is one layer's weights plus the hidden states of
    /// a group's windows; windows are grouped so those states stay within `memoryBudget` bytes
    /// (at least one window a group). Each window is computed exactly as `forward` computes it,
    /// so `observer` sees the same values; the final norm and lm_head are not run.
    ///
    /// `layerDone(index)` is called once every window has passed layer `index` (so the observer
    /// has seen all of that layer's inputs); it needs all windows in one group, and throws when
    /// their hidden states exceed `memoryBudget`.
    public func observeLayerByLayer(_ windows: [[Int32]], observer: RoutingObserver, memoryBudget: Int,
                                    progress: ((LayerPassProgress) -> Void)? = nil,
                                    layerDone: ((Int) throws -> Void)? = nil) throws {
        try runLayerByLayer(windows, observer: observer, memoryBudget: memoryBudget, progress: progress, logits: nil,
                            layerDone: layerDone)
    }

    /// `observeLayerByLayer`, and when `logits` is given, the final norm and lm_head too: once a
    /// group's windows have passed the last layer, `logits(w, values)` receives window w's
    /// logits [count, vocab] (exactly `forward`'s), in window order.
    public func runLayerByLayer(_ windows: [[Int32]], observer: RoutingObserver?, memoryBudget: Int,
                                progress: ((LayerPassProgress) -> Void)? = nil,
                                logits: ((_ window: Int, _ logits: [Float]) throws -> Void)?,
                                layerDone: ((Int) throws -> Void)? = nil) throws {
        let c = config, h = c.hiddenSize
        guard let longest = windows.map(\.count).max(), longest > 0 else { return }
        guard longest <= c.maxPositionEmbeddings else {
            throw RuntimeError("context overflow: \(longest) tokens exceed the limit of \(c.maxPositionEmbeddings)")
        }
        for window in windows {
            if let bad = window.first(where: { $0 < 0 || Int($0) >= c.vocabSize }) {
                throw RuntimeError("token id \(bad) is outside the vocabulary (0..<\(c.vocabSize))")
            }
        }
        let groups = Self.windowGroups(windows.map(\.count), bytesPerToken: h * MemoryLayout<Float>.size, budget: memoryBudget)
        if layerDone != nil, groups.count > 1 {
            let mb = Double(windows.reduce(0) { $0 + $1.count } * h * MemoryLayout<Float>.size) / 1e6
            throw RuntimeError(String(format: "the windows' hidden states (%.0f MB) exceed the memory budget of one pass (%.0f MB)",
                                      mb, Double(memoryBudget) / 1e6))
        }
        let rotary = RotaryTable(positions: Array(0..<longest), inverseFrequencies: rotaryFrequencies)
        let cache = makeCache(capacity: longest)
        var normed = [Float](repeating: 0, count: longest * h)
        var branch = [Float](repeating: 0, count: longest * h)
        let tokens = windows.reduce(0) { $0 + $1.count }
        let total = tokens * layers.count
        var done = 0
        let start = Date()
        for (g, group) in groups.enumerated() {
            var states: [[Float]] = group.map { w in
                var x = [Float](repeating: 0, count: windows[w].count * h)
                x.withUnsafeMutableBufferPointer { xb in
                    for (t, token) in windows[w].enumerated() { embedding.copyRow(Int(token), into: xb.baseAddress! + t * h) }
                }
                return x
            }
            embedding.releasePages()
            for (index, layer) in layers.enumerated() {
                for (i, w) in group.enumerated() {
                    let count = windows[w].count
                    layer.apply(&states[i], normed: &normed, branch: &branch, count: count, eps: Float(c.rmsNormEps),
                                observer: observer) { input, output in
                        layer.attention(input, count: count, layer: index, cache: cache, rotary: rotary, into: output,
                                        contextInput: observer.inputs(layer: index, site: .attentionOutput, count: count))
                    }
                    cache.commit(count)
                    cache.reset()
                    done += count
                    progress?(LayerPassProgress(layer: index, layers: layers.count, group: g, groups: groups.count,
                                                tokenLayersDone: done, tokenLayersTotal: total,
                                                elapsed: Date().timeIntervalSince(start)))
                }
                layer.releasePages()
                try layerDone?(index)
            }
            if let observer {
                // what lm_head reads: the final norm of every row (only this pass reports it)
                for (i, w) in group.enumerated() {
                    let count = windows[w].count
                    states[i].withUnsafeBufferPointer { x in
                        normed.withUnsafeMutableBufferPointer { nb in
                            Ops.rmsNorm(x.baseAddress!, weight: finalNorm, eps: Float(c.rmsNormEps), count: count, into: nb.baseAddress!)
                            observer.observeInputs(layer: layers.count, site: .lmHead, rows: nb.baseAddress!, count: count, width: h)
                        }
                    }
                }
            }
            guard let logits else { continue }
            for (i, w) in group.enumerated() {
                try Task.checkCancellation()
                try logits(w, try headLogits(&states[i], fromRow: 0, count: windows[w].count, firstPosition: 0))
                states[i] = []
            }
            lmHead.weight.releasePages()
        }
    }


    /// Consecutive windows (by index) whose hidden states, `bytesPerToken` per token, fit in
    /// `budget` bytes together; a window larger than the budget is a group of its own.
    static func windowGroups(_ lengths: [Int], bytesPerToken: Int, budget: Int) -> [[Int]] {
        var groups: [[Int]] = [], current: [Int] = [], bytes = 0
        for (w, length) in lengths.enumerated() {
            let size = length * bytesPerToken
            if !current.isEmpty, bytes + size > budget {
                groups.append(current)
                current = []
                bytes = 0
            }
            current.append(w)
            bytes += size
        }
        if !current.isEmpty { groups.append(current) }
        return groups
    }
}

extension DecoderLayer {
    /// Gives back the mapped pages of every weight of this layer.
    func releasePages() {
        for linear in [attention.q, attention.k, attention.v, attention.o] { linear.weight.releasePages() }
        switch mlp {
        case .dense(let f): f.releasePages()
        case .moe(let m):
            m.router.releasePages()
            m.shared?.releasePages()
            for expert in m.experts { expert.releasePages() }
        }
    }
}

extension FeedForward {
    func releasePages() {
        for linear in [gate, up, down] { linear.weight.releasePages() }
    }
}
