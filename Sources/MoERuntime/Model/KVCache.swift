import MoEFormat

/// Keys and values of every layer for the tokens seen so far (after rotary embedding), so a new
/// token attends to the past without recomputing it.
public final class KVCache: @unchecked Sendable {
    public let layerCount: Int
    public let kvDim: Int
    /// Maximum number of positions this cache accepts.
    public let capacity: Int
    public private(set) var count = 0
    var keys: [[Float]]
    var values: [[Float]]

    public init(config: ModelConfig, capacity: Int? = nil) {
        layerCount = config.numHiddenLayers
        kvDim = config.numKeyValueHeads * config.headDim
        self.capacity = min(capacity ?? config.maxPositionEmbeddings, config.maxPositionEmbeddings)
        keys = Array(repeating: [], count: layerCount)
        values = Array(repeating: [], count: layerCount)
    }

    /// Drops every cached position.
    public func reset() {
        count = 0
        for l in 0..<layerCount {
            keys[l].removeAll(keepingCapacity: true)
            values[l].removeAll(keepingCapacity: true)
        }
    }

    /// Forgets positions from `length` on (keeps the first `length`).
    public func truncate(to length: Int) {
        guard length < count else { return }
        count = length
        for l in 0..<layerCount {
            keys[l].removeLast(keys[l].count - length * kvDim)
            values[l].removeLast(values[l].count - length * kvDim)
        }
    }

    func append(layer: Int, keys k: UnsafeBufferPointer<Float>, values v: UnsafeBufferPointer<Float>) {
        keys[layer].append(contentsOf: k)
        values[layer].append(contentsOf: v)
    }

    /// Called once all layers have appended `tokens` new positions.
    func commit(_ tokens: Int) { count += tokens }
}
