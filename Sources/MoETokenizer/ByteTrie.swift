import Foundation

/// A byte-keyed trie mapping UTF-8 byte strings to ids, built once from all keys.
/// Nodes are numbered breadth-first so the children of a node are consecutive node numbers;
/// a child is found by binary search over their edge labels. Building sorts the keys and uses
/// plain arrays only, which keeps loading a 100k-piece vocabulary fast.
struct ByteTrie: Sendable {
    private var childStart: [Int32] = [0]
    private var childCount: [Int32] = [0]
    private var labels: [UInt8] = [0]
    private var values: [Int32] = [-1]

    init() {}

    /// Builds the trie. When a key occurs more than once the first entry wins; the indices of
    /// the later ones are returned in `duplicates`.
    init(entries: [(key: [UInt8], value: Int32)], duplicates: inout [Int]) {
        // All keys in one buffer so sorting and grouping compare raw memory.
        var flat: [UInt8] = []
        var start: [Int] = [], length: [Int] = []
        flat.reserveCapacity(entries.reduce(0) { $0 + $1.key.count })
        for e in entries {
            start.append(flat.count)
            length.append(e.key.count)
            flat.append(contentsOf: e.key)
        }
        var order = Array(entries.indices)
        flat.withUnsafeBufferPointer { buf in
            let base = buf.baseAddress
            order.sort { i, j in
                let li = length[i], lj = length[j]
                let c = li == 0 || lj == 0 ? 0 : memcmp(base! + start[i], base! + start[j], min(li, lj))
                if c != 0 { return c < 0 }
                return li != lj ? li < lj : i < j
            }
            // Pending nodes in creation order: (node, first, end, depth) over `order`.
            var queue: [(Int, Int, Int, Int)] = [(0, 0, order.count, 0)]
            var head = 0
            while head < queue.count {
                let (node, lo, hi, depth) = queue[head]
                head += 1
                var i = lo
                // Keys ending at this node sort before longer keys sharing the prefix.
                while i < hi && length[order[i]] == depth {
                    if values[node] < 0 { values[node] = entries[order[i]].value } else { duplicates.append(order[i]) }
                    i += 1
                }
                childStart[node] = Int32(values.count)
                while i < hi {
                    let byte = buf[start[order[i]] + depth]
                    var j = i + 1
                    while j < hi && buf[start[order[j]] + depth] == byte { j += 1 }
                    let child = values.count
                    childStart.append(0); childCount.append(0); labels.append(byte); values.append(-1)
                    queue.append((child, i, j, depth + 1))
                    i = j
                }
                childCount[node] = Int32(values.count) - childStart[node]
            }
        }
    }

    init(entries: [(key: [UInt8], value: Int32)]) {
        var ignored: [Int] = []
        self.init(entries: entries, duplicates: &ignored)
    }

    var isEmpty: Bool { values.count == 1 && values[0] < 0 }

    @inline(__always)
    func child(of node: Int32, _ byte: UInt8) -> Int32? {
        var lo = Int(childStart[Int(node)])
        var hi = lo + Int(childCount[Int(node)])
        while lo < hi {
            let mid = (lo + hi) >> 1
            let l = labels[mid]
            if l == byte { return Int32(mid) }
            if l < byte { lo = mid + 1 } else { hi = mid }
        }
        return nil
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
