/// One piece of an encoding: a byte range of the normalized text and its id.
struct Segment: Sendable, Equatable {
    var start: Int
    var length: Int
    var id: Int32
}

/// SentencePiece's BPE segmentation: start from characters (user-defined pieces whole and frozen),
/// repeatedly merge the adjacent pair whose joined piece has the highest score (leftmost on ties).
enum BPEModel {
    fileprivate struct Pair {
        var score: Float
        var left: Int
        var right: Int
        var size: Int
        /// Heap order: higher score first, then smaller left index.
        @inline(__always) func precedes(_ o: Pair) -> Bool {
            score > o.score || (score == o.score && left < o.left)
        }
    }

    private struct Symbol {
        var prev: Int
        var next: Int
        var freeze: Bool
        var start: Int
        var length: Int
    }

    static func encode(_ text: UnsafeBufferPointer<UInt8>, vocab: Vocabulary) -> [Segment] {
        let n = text.count
        if n == 0 { return [] }
        var symbols: [Symbol] = []
        symbols.reserveCapacity(n)
        var pos = 0
        while pos < n {
            var len = vocab.userDefined.longestPrefix(text, from: pos, to: n)
            let freeze = len > 0
            if !freeze { len = min(utf8CharLength(text[pos]), n - pos) }
            let index = symbols.count
            symbols.append(Symbol(prev: index - 1, next: pos + len < n ? index + 1 : -1,
                                  freeze: freeze, start: pos, length: len))
            pos += len
        }

        var heap = PairHeap()
        // Merged unused pieces are split back into their parts at the end.
        var revMerge: [[UInt8]: (Range<Int>, Range<Int>)] = [:]

        func maybeAdd(_ left: Int, _ right: Int) {
            guard left >= 0, right >= 0, !symbols[left].freeze, !symbols[right].freeze else { return }
            let s = symbols[left].start
            let size = symbols[left].length + symbols[right].length
            guard let id = vocab.normal.lookup(text, s..<(s + size)) else { return }
            heap.push(Pair(score: vocab.scores[Int(id)], left: left, right: right, size: size))
            if vocab.types[Int(id)] == .unused {
                let l = symbols[left], r = symbols[right]
                revMerge[Array(text[s..<(s + size)])] = (l.start..<(l.start + l.length), r.start..<(r.start + r.length))
            }
        }

        for i in 1..<max(1, symbols.count) { maybeAdd(i - 1, i) }

        while let top = heap.pop() {
            let l = symbols[top.left], r = symbols[top.right]
            if l.length == 0 || r.length == 0 || l.length + r.length != top.size { continue }
            symbols[top.left].length = top.size
            symbols[top.left].next = r.next
            if r.next >= 0 { symbols[r.next].prev = top.left }
            symbols[top.right].length = 0
            maybeAdd(symbols[top.left].prev, top.left)
            maybeAdd(top.left, symbols[top.left].next)
        }

        var out: [Segment] = []
        func resegment(_ r: Range<Int>, depth: Int) {
            let id = vocab.id(of: text[r])
            if vocab.types[Int(id)] != .unused || depth > 64 {
                out.append(Segment(start: r.lowerBound, length: r.count, id: id))
                return
            }
            guard let (a, b) = revMerge[Array(text[r])] else {
                out.append(Segment(start: r.lowerBound, length: r.count, id: id))
                return
            }
            resegment(a, depth: depth + 1)
            resegment(b, depth: depth + 1)
        }
        var index = 0
        while index >= 0 && index < symbols.count {
            let s = symbols[index]
            resegment(s.start..<(s.start + s.length), depth: 0)
            index = s.next
        }
        return out
    }
}

/// A binary max-heap of merge candidates in `Pair.precedes` order.
private struct PairHeap {
    private var items: [BPEModel.Pair] = []

    mutating func push(_ e: BPEModel.Pair) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard items[i].precedes(items[p]) else { break }
            items.swapAt(i, p)
            i = p
        }
    }

    mutating func pop() -> BPEModel.Pair? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            let n = items.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && items[l].precedes(items[m]) { m = l }
                if r < n && items[r].precedes(items[m]) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return first
    }
}
