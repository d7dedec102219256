/// Watches generated text for stop strings. Text that might be the start of a stop string is held
/// back until it is clear, so a stop string never reaches the caller, even split across tokens.
public struct StopMatcher: Sendable {
    private let stops: [[Unicode.Scalar]]
    private var pending: [Unicode.Scalar] = []
    public private(set) var stopped = false

    public init(stopStrings: [String]) {
        stops = stopStrings.map { Array($0.unicodeScalars) }.filter { !$0.isEmpty }
    }

    /// Adds generated text; returns the part that is safe to show. After a stop string is found
    /// `stopped` is true and the text from the stop string on is dropped.
    public mutating func append(_ text: String) -> String {
        guard !stopped else { return "" }
        pending.append(contentsOf: text.unicodeScalars)
        if let cut = firstMatch() {
            stopped = true
            let shown = String(String.UnicodeScalarView(pending[..<cut]))
            pending.removeAll()
            return shown
        }
        let keep = heldBack()
        let shown = String(String.UnicodeScalarView(pending[..<(pending.count - keep)]))
        pending.removeFirst(pending.count - keep)
        return shown
    }

    /// The held-back text, once generation ended for another reason.
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return stopped ? "" : String(String.UnicodeScalarView(pending))
    }

    private func firstMatch() -> Int? {
        var best: Int?
        for stop in stops where stop.count <= pending.count {
            for start in 0...(pending.count - stop.count) where best.map({ start < $0 }) ?? true {
                if pending[start..<(start + stop.count)].elementsEqual(stop) {
                    best = start
                    break
                }
            }
        }
        return best
    }

    /// Length of the longest tail of `pending` that is a proper prefix of some stop string.
    private func heldBack() -> Int {
        var longest = 0
        for stop in stops {
            for length in stride(from: min(stop.count - 1, pending.count), to: longest, by: -1)
            where pending[(pending.count - length)...].elementsEqual(stop[..<length]) {
                longest = length
                break
            }
        }
        return longest
    }
}
