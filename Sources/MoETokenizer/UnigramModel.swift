/// SentencePiece's unigram segmentation: the Viterbi best path over all vocabulary pieces,
/// following the library's encoder (float path scores, the same tie-breaking).
struct UnigramModel: Sendable {
    let minScore: Float
    let maxScore: Float

    init(vocab: Vocabulary) {
        // The library starts from FLT_MAX / FLT_MIN (the smallest positive float).
        var lo = Float.greatestFiniteMagnitude, hi = Float.leastNormalMagnitude
        for (i, t) in vocab.types.enumerated() where t == .normal {
            lo = min(lo, vocab.scores[i])
            hi = max(hi, vocab.scores[i])
        }
        minScore = lo
        maxScore = hi
    }

    private struct Node {
        var id: Int32 = -1
        var score: Float = 0
        var startsAt: Int = -1
    }

    func encode(_ text: UnsafeBufferPointer<UInt8>, vocab: Vocabulary) -> [Segment] {
        let size = text.count
        if size == 0 { return [] }
        let unkScore = minScore - 10.0
        var best = [Node](repeating: Node(), count: size + 1)
        var startsAt = 0
        while startsAt < size {
            let scoreHere = best[startsAt].score
            var hasSingleNode = false
            let mblen = min(utf8CharLength(text[startsAt]), size - startsAt)
            var node: Int32 = 0
            var keyPos = startsAt
            while keyPos < size, let child = vocab.normal.child(of: node, text[keyPos]) {
                node = child
                keyPos += 1
                guard let id = vocab.normal.value(at: node) else { continue }
                let type = vocab.types[Int(id)]
                if type == .unused { continue }
                let length = keyPos - startsAt
                // Path scores are summed and compared in float, as the library does: equal-score
                // paths made of the same pieces in another order (a run of "-" or "=") then tie
                // exactly, and the first candidate (the longest last piece) wins. Summing in double
                // breaks those ties by rounding noise and picks another order.
                let score: Float = type == .userDefined
                    ? Float(Double(Float(length) * maxScore) - 0.1)  // bonus: user-defined pieces always win
                    : vocab.scores[Int(id)]
                let candidate = score + scoreHere
                if best[keyPos].startsAt == -1 || candidate > best[keyPos].score {
                    best[keyPos] = Node(id: id, score: candidate, startsAt: startsAt)
                }
                if !hasSingleNode && length == mblen { hasSingleNode = true }
            }
            if !hasSingleNode {
                let candidate = unkScore + scoreHere
                let end = startsAt + mblen
                if best[end].startsAt == -1 || candidate > best[end].score {
                    best[end] = Node(id: vocab.unkID, score: candidate, startsAt: startsAt)
                }
            }
            startsAt += mblen
        }

        var out: [Segment] = []
        var endsAt = size
        while endsAt > 0 {
            let n = best[endsAt]
            guard n.startsAt >= 0, n.startsAt < endsAt else { break }
            out.append(Segment(start: n.startsAt, length: endsAt - n.startsAt, id: n.id))
            endsAt = n.startsAt
        }
        out.reverse()
        return out
    }
}
