import MoEFormat

/// Keys and values of every layer for the tokens seen so far (after rotary embedding), so a new
/// token attends to the past without recomputing it.
public final class KVCache: @unchecked Sendable {
    public let layerCount: Int
    public let kvDim: Int
    let kvHeads: Int
    let headDim: Int
    /// Maximum number of positions this cache accepts.
    public let capacity: Int
    public private(set) var count = 0
    /// Per layer and key/value head (index layer * kvHeads + head): [positions, headDim]
    /// row-major, grown as positions are appended. One head's keys are contiguous, so
    /// attention reads each head's cache as a single sequential stream.
    private let keyRows: [FloatRows]
    private let valueRows: [FloatRows]

    public init(config: ModelConfig, capacity: Int? = nil) {
        layerCount = config.numHiddenLayers
        kvHeads = config.numKeyValueHeads
        headDim = config.headDim
        kvDim = kvHeads * headDim
        self.capacity = min(capacity ?? config.maxPositionEmbeddings, config.maxPositionEmbeddings)
        keyRows = (0..<(layerCount * kvHeads)).map { _ in FloatRows() }
        valueRows = (0..<(layerCount * kvHeads)).map { _ in FloatRows() }
    }

    /// Drops every cached position.
    public func reset() { truncate(to: 0) }

    /// Forgets positions from `length` on (keeps the first `length`).
    public func truncate(to length: Int) {
        guard length < count else { return }
        count = max(length, 0)
        for i in keyRows.indices {
            keyRows[i].count = count * headDim
            valueRows[i].count = count * headDim
        }
    }

    /// Appends `rows` positions of keys and values, each given as [rows, kvDim] row-major.
    func append(layer: Int, rows: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>) {
        for head in 0..<kvHeads { append(layer: layer, head: head, rows: rows, keys: k, values: v) }
    }

    /// Appends one key/value head's part of `rows` positions given as [rows, kvDim] row-major.
    /// Different heads (or layers) may be appended from different threads at once.
    func append(layer: Int, head: Int, rows: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>) {
        keyRows[layer * kvHeads + head].append(k + head * headDim, rows: rows, stride: kvDim, width: headDim)
        valueRows[layer * kvHeads + head].append(v + head * headDim, rows: rows, stride: kvDim, width: headDim)
    }

    /// Keys of one head of `layer`, [positions, headDim] for every appended position (committed
    /// or not); valid until the next append.
    func keys(layer: Int, head: Int) -> UnsafePointer<Float> { UnsafePointer(keyRows[layer * kvHeads + head].pointer) }
    func values(layer: Int, head: Int) -> UnsafePointer<Float> { UnsafePointer(valueRows[layer * kvHeads + head].pointer) }

    /// Called once all layers have appended `tokens` new positions.
    func commit(_ tokens: Int) { count += tokens }
}

/// A growable f32 buffer with a pointer that stays valid between appends.
private final class FloatRows {
    private(set) var pointer = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private var allocated = 1
    var count = 0

    /// Appends `rows` rows of `width` values, row r read from base + r * stride.
    func append(_ base: UnsafePointer<Float>, rows: Int, stride: Int, width: Int) {
        let needed = count + rows * width
        if needed > allocated {
            let grown = max(needed, allocated * 2)
            let bigger = UnsafeMutablePointer<Float>.allocate(capacity: grown)
            bigger.update(from: pointer, count: count)
            pointer.deallocate()
            pointer = bigger
            allocated = grown
        }
        for r in 0..<rows { (pointer + count + r * width).update(from: base + r * stride, count: width) }
        count = needed
    }

    deinit { pointer.deallocate() }
}
