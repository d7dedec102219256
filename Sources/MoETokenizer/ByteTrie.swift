/// A byte-keyed trie mapping UTF-8 byte strings to ids. Nodes are numbered; the edge
/// (node, byte) -> child is kept in one hash table, which keeps building and lookup simple.
struct ByteTrie: Sendable {
    private var edges: [UInt64: Int32] = [:]
    private var values: [Int32] = [-1]

    var isEmpty: Bool { values.count == 1 && values[0] < 0 }

    /// Inserts `key` with `value`; an existing key keeps its first value.
    mutating func insert<C: Collection>(_ key: C, value: Int32) where C.Element == UInt8 {
        var node: Int32 = 0
        for b in key {
            let k = UInt64(UInt32(bitPattern: node)) << 8 | UInt64(b)
            if let child = edges[k] {
                node = child
            } else {
                let child = Int32(values.count)
                values.append(-1)
                edges[k] = child
                node = child
            }
        }
        if values[Int(node)] < 0 { values[Int(node)] = value }
    }

    @inline(__always)
    func child(of node: Int32, _ byte: UInt8) -> Int32? {
        edges[UInt64(UInt32(bitPattern: node)) << 8 | UInt64(byte)]
    }

    @inline(__always)
    func value(at node: Int32) -> Int32? {
        let v = values[Int(node)]
        return v >= 0 ? v : nil
    }

    /// Exact lookup of `bytes[range]`.
    func lookup(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Int32? {
        var node: Int32 = 0
        for i in range {
            guard let c = child(of: node, bytes[i]) else { return nil }
            node = c
        }
        return value(at: node)
    }

    func lookup<C: Collection>(_ key: C) -> Int32? where C.Element == UInt8 {
        var node: Int32 = 0
        for b in key {
            guard let c = child(of: node, b) else { return nil }
            node = c
        }
        return value(at: node)
    }

    /// Length in bytes of the longest key that is a prefix of `bytes[start..<end]`, or 0.
    func longestPrefix(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int) -> Int {
        var node: Int32 = 0
        var best = 0
        var i = start
        while i < end, let c = child(of: node, bytes[i]) {
            node = c
            i += 1
            if values[Int(c)] >= 0 { best = i - start }
        }
        return best
    }
}

/// Byte length of the UTF-8 character starting with `lead` (1 for stray continuation bytes),
/// as SentencePiece's OneCharLen.
@inline(__always)
func utf8CharLength(_ lead: UInt8) -> Int {
    switch lead >> 4 {
    case 0xC, 0xD: return 2
    case 0xE: return 3
    case 0xF: return 4
    default: return 1
    }
}
