/// The BPE model of a tokenizer.json: pieces, merges by rank, and the merge loop the `tokenizers`
/// library runs on one pre-token (its `Word::merge_all`: a queue ordered by rank, then position,
/// and entries that no longer describe the pair at their position are skipped).
struct BPEMerges: Sendable {
    /// Piece id of each byte's one-character piece (-1 when the vocabulary lacks it).
    let byteID: [Int32]
    /// (left id, right id) packed into 64 bits -> (rank, merged id).
    let merges: [UInt64: (rank: Int32, id: Int32)]
    /// Pieces by their bytes, for `ignore_merges` (a whole pre-token that is a piece is kept).
    let pieceByBytes: [[UInt8]: Int32]
    let ignoreMerges: Bool
    let unkID: Int32?

    static func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b)) }

    /// Appends the ids of one pre-token (raw bytes) to `out`.
    func encode(_ word: ArraySlice<UInt8>, into out: inout [Int32]) {
        if ignoreMerges, let id = pieceByBytes[Array(word)] {
            out.append(id)
            return
        }
        var symbols: [Int32] = []
        symbols.reserveCapacity(word.count)
        for b in word {
            let id = byteID[Int(b)]
            if id >= 0 { symbols.append(id) } else if let unkID { symbols.append(unkID) }
        }
        if symbols.count < 2 {
            out += symbols
            return
        }
        mergeAll(&symbols)
        out += symbols
    }

    struct Entry {
        var key: UInt64      // rank << 32 | position: the smallest is merged first
        var id: Int32
    }

    private func mergeAll(_ symbols: inout [Int32]) {
        let n = symbols.count
        var prev = [Int](0..<n).map { $0 - 1 }
        var next = [Int](1...n)
        var alive = [Bool](repeating: true, count: n)
        var heap: [Entry] = []
        heap.reserveCapacity(n)
        func push(_ pos: Int, _ right: Int) {
            if let m = merges[Self.key(symbols[pos], symbols[right])] {
                heapPush(&heap, Entry(key: UInt64(UInt32(m.rank)) << 32 | UInt64(pos), id: m.id))
            }
        }
        for i in 0..<(n - 1) { push(i, i + 1) }
        while let top = heapPop(&heap) {
            let pos = Int(top.key & 0xFFFF_FFFF)
            guard alive[pos], next[pos] < n else { continue }
            let right = next[pos]
            guard let m = merges[Self.key(symbols[pos], symbols[right])], m.id == top.id else { continue }
            symbols[pos] = top.id
            alive[right] = false
            next[pos] = next[right]
            if next[right] < n { prev[next[right]] = pos }
            if prev[pos] >= 0 { push(prev[pos], pos) }
            if next[pos] < n { push(pos, next[pos]) }
        }
        var k = 0
        for i in 0..<n where alive[i] {
            symbols[k] = symbols[i]
            k += 1
        }
        symbols.removeLast(n - k)
    }
}

/// A binary min-heap on `key`, on a plain array.
private func heapPush(_ h: inout [BPEMerges.Entry], _ e: BPEMerges.Entry) {
    h.append(e)
    var i = h.count - 1
    while i > 0 {
        let p = (i - 1) / 2
        if h[p].key <= h[i].key { break }
        h.swapAt(p, i)
        i = p
    }
}

private func heapPop(_ h: inout [BPEMerges.Entry]) -> BPEMerges.Entry? {
    guard let first = h.first else { return nil }
    let last = h.removeLast()
    if h.isEmpty { return first }
    h[0] = last
    var i = 0
    while true {
        let l = 2 * i + 1, r = l + 1
        var m = i
        if l < h.count && h[l].key < h[m].key { m = l }
        if r < h.count && h[r].key < h[m].key { m = r }
        if m == i { break }
        h.swapAt(m, i)
        i = m
    }
    return first
}
