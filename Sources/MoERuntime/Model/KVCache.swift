import MoEFormat
import MoEKernels

/// Keys and values of every layer for the tokens seen so far (after rotary embedding), so a new
/// token attends to the past without recomputing it.
public final class KVCache: @unchecked Sendable {
    /// How cached keys and values are stored. Attention computes in f32 either way; f16 halves
    /// the cache's memory and what attention reads per position.
    public enum Precision: String, Sendable, CaseIterable {
        case f32, f16

        var elementSize: Int { self == .f32 ? 4 : 2 }
    }

    public let precision: Precision
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
    private let keyRows: [CacheRows]
    private let valueRows: [CacheRows]

    public init(config: ModelConfig, capacity: Int? = nil, precision: Precision = .f32) {
        self.precision = precision
        layerCount = config.numHiddenLayers
        kvHeads = config.numKeyValueHeads
        headDim = config.headDim
        kvDim = kvHeads * headDim
        self.capacity = min(capacity ?? config.maxPositionEmbeddings, config.maxPositionEmbeddings)
        keyRows = (0..<(layerCount * kvHeads)).map { _ in CacheRows(precision) }
        valueRows = (0..<(layerCount * kvHeads)).map { _ in CacheRows(precision) }
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

    /// Makes this cache hold the same positions as `source` (a cache of the same model and
    /// precision), replacing what it held: sequences that share a prompt prefill it once.
    public func copyPositions(from source: KVCache) throws {
        guard source.precision == precision, source.layerCount == layerCount, source.kvHeads == kvHeads,
              source.headDim == headDim else {
            throw RuntimeError("copyPositions: the caches were made for different models or precisions")
        }
        guard source.count <= capacity else {
            throw RuntimeError("copyPositions: \(source.count) positions exceed this cache's \(capacity)")
        }
        for i in keyRows.indices {
            keyRows[i].assign(from: source.keyRows[i])
            valueRows[i].assign(from: source.valueRows[i])
        }
        count = source.count
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

    /// Keys of one head of `layer`, [positions, headDim] of `precision` for every appended
    /// position (committed or not); valid until the next append.
    func keys(layer: Int, head: Int) -> UnsafeRawPointer { UnsafeRawPointer(keyRows[layer * kvHeads + head].pointer) }
    func values(layer: Int, head: Int) -> UnsafeRawPointer { UnsafeRawPointer(valueRows[layer * kvHeads + head].pointer) }

    /// Called once all layers have appended `tokens` new positions.
    func commit(_ tokens: Int) { count += tokens }
}

/// A growable buffer of f32 or f16 values with a pointer that stays valid between appends.
private final class CacheRows {
    private let precision: KVCache.Precision
    private(set) var pointer: UnsafeMutableRawPointer
    private var allocated = 1
    /// Values held (not bytes).
    var count = 0

    init(_ precision: KVCache.Precision) {
        self.precision = precision
        pointer = .allocate(byteCount: precision.elementSize, alignment: 64)
    }

    /// Appends `rows` rows of `width` f32 values, row r read from base + r * stride, converted
    /// to the buffer's precision.
    func append(_ base: UnsafePointer<Float>, rows: Int, stride: Int, width: Int) {
        let size = precision.elementSize
        let needed = count + rows * width
        if needed > allocated {
            let grown = max(needed, allocated * 2)
            let bigger = UnsafeMutableRawPointer.allocate(byteCount: grown * size, alignment: 64)
            bigger.copyMemory(from: pointer, byteCount: count * size)
            pointer.deallocate()
            pointer = bigger
            allocated = grown
        }
        for r in 0..<rows {
            let source = base + r * stride, offset = (count + r * width) * size
            switch precision {
            case .f32: (pointer + offset).copyMemory(from: source, byteCount: width * size)
            case .f16: moe_f32_to_f16_n(source, (pointer + offset).assumingMemoryBound(to: UInt16.self), Int64(width))
            }
        }
        count = needed
    }

    /// Holds a copy of `other`'s values.
    func assign(from other: CacheRows) {
        let size = precision.elementSize
        if other.count > allocated {
            pointer.deallocate()
            pointer = .allocate(byteCount: other.count * size, alignment: 64)
            allocated = other.count
        }
        pointer.copyMemory(from: other.pointer, byteCount: other.count * size)
        count = other.count
    }

    deinit { pointer.deallocate() }
}
