import MoEFormat

/// Keys and values of every layer for the tokens seen so far (after rotary embedding), so a new
/// token attends to the past without recomputing it.
public final class KVCache: @unchecked Sendable {
    public let layerCount: Int
    public let kvDim: Int
    /// Maximum number of positions this cache accepts.
    public let capacity: Int
    public private(set) var count = 0
    /// Per layer: [positions, kvDim] row-major, grown as positions are appended.
    private let keyRows: [FloatRows]
    private let valueRows: [FloatRows]

    public init(config: ModelConfig, capacity: Int? = nil) {
        layerCount = config.numHiddenLayers
        kvDim = config.numKeyValueHeads * config.headDim
        self.capacity = min(capacity ?? config.maxPositionEmbeddings, config.maxPositionEmbeddings)
        keyRows = (0..<layerCount).map { _ in FloatRows() }
        valueRows = (0..<layerCount).map { _ in FloatRows() }
    }

    /// Drops every cached position.
    public func reset() { truncate(to: 0) }

    /// Forgets positions from `length` on (keeps the first `length`).
    public func truncate(to length: Int) {
        guard length < count else { return }
        count = max(length, 0)
        for l in 0..<layerCount {
            keyRows[l].count = count * kvDim
            valueRows[l].count = count * kvDim
        }
    }

    func append(layer: Int, keys k: UnsafeBufferPointer<Float>, values v: UnsafeBufferPointer<Float>) {
        keyRows[layer].append(k)
        valueRows[layer].append(v)
    }

    /// Keys of `layer`, every appended position (committed or not); valid until the next append.
    func keys(layer: Int) -> UnsafePointer<Float> { UnsafePointer(keyRows[layer].pointer) }
    func values(layer: Int) -> UnsafePointer<Float> { UnsafePointer(valueRows[layer].pointer) }

    /// Called once all layers have appended `tokens` new positions.
    func commit(_ tokens: Int) { count += tokens }
}

/// A growable f32 buffer with a pointer that stays valid between appends.
private final class FloatRows {
    private(set) var pointer = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private var allocated = 1
    var count = 0

    func append(_ values: UnsafeBufferPointer<Float>) {
        let needed = count + values.count
        if needed > allocated {
            let grown = max(needed, allocated * 2)
            let bigger = UnsafeMutablePointer<Float>.allocate(capacity: grown)
            bigger.update(from: pointer, count: count)
            pointer.deallocate()
            pointer = bigger
            allocated = grown
        }
        if let base = values.baseAddress { (pointer + count).update(from: base, count: values.count) }
        count = needed
    }

    deinit { pointer.deallocate() }
}
