import Foundation

/// Unicode NFC as the `tokenizers` library applies it, on top of Foundation's canonical
/// composition, which on Linux has two faults this works around:
/// - a character beyond U+FFFF followed by a combining mark is composed as if its code were
///   16 bits (U+10041 U+0301 became Á): such a character with its marks is mapped one
///   character at a time and put in canonical order (marks by combining class), but not
///   composed (the few compositions beyond the BMP, in Kaithi, Chakma, Grantha and a few other
///   scripts, are missed);
/// - Hangul: a precomposed LV syllable followed by a trailing jamo stays apart, and a leading
///   jamo joins U+1176 (not a vowel of the algorithm): Hangul jamo are composed here with the
///   algorithm of Unicode §3.12 instead.
/// Left as it is: about 50 marks the library does not reorder (U+0898 and others added in
/// Unicode 10 to 14) are reordered here, as their combining classes say.
enum NFC {
    static func normalize(_ s: String) -> String {
        // Fast path: nothing beyond the BMP (no 4-byte UTF-8) and no Hangul jamo (E1 84..87).
        var utf8 = s.utf8.makeIterator()
        var needsCare = false
        while let b = utf8.next() {
            if b >= 0xF0 { needsCare = true; break }
            if b == 0xE1, let c = utf8.next(), (0x84...0x87).contains(c) { needsCare = true; break }
        }
        guard needsCare else { return s.precomposedStringWithCanonicalMapping }
        let scalars = Array(s.unicodeScalars)
        var out = String.UnicodeScalarView()
        func foundation(_ range: Range<Int>) {
            guard !range.isEmpty else { return }
            let text = String(String.UnicodeScalarView(scalars[range]))
            out.append(contentsOf: text.precomposedStringWithCanonicalMapping.unicodeScalars)
        }
        var pendingStart = 0
        var i = 0
        while i < scalars.count {
            // A cluster: a starter and the marks after it.
            var j = i + 1
            while j < scalars.count && !isStarter(scalars[j]) { j += 1 }
            let cluster = scalars[i..<j]
            if cluster.contains(where: isJamo) || (j - i > 1 && cluster.contains { $0.value > 0xFFFF }) {
                foundation(pendingStart..<i)
                out.append(contentsOf: canonicalOrder(cluster))
                pendingStart = j
            }
            i = j
        }
        foundation(pendingStart..<scalars.count)
        return composeHangul(out)
    }

    private static func isStarter(_ s: Unicode.Scalar) -> Bool {
        s.value < 0x300 || s.properties.canonicalCombiningClass == .notReordered
    }

    /// Each character's own mapping (Foundation is right one character at a time: U+0340
    /// becomes U+0300, U+1D15E its two parts), then marks in canonical order; no composition.
    private static func canonicalOrder(_ cluster: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        var scalars: [Unicode.Scalar] = []
        for c in cluster { scalars += String(c).precomposedStringWithCanonicalMapping.unicodeScalars }
        var i = 1
        while i < scalars.count {
            let a = scalars[i - 1].properties.canonicalCombiningClass.rawValue
            let b = scalars[i].properties.canonicalCombiningClass.rawValue
            if b != 0 && a > b {
                scalars.swapAt(i - 1, i)
                i = max(1, i - 1)
            } else {
                i += 1
            }
        }
        return scalars
    }

    private static func isJamo(_ s: Unicode.Scalar) -> Bool { (0x1100...0x11FF).contains(s.value) }

    /// Joins leading + vowel jamo and LV syllable + trailing jamo.
    private static func composeHangul(_ scalars: String.UnicodeScalarView) -> String {
        guard scalars.contains(where: isJamo) else { return String(scalars) }
        var out = String.UnicodeScalarView()
        for scalar in scalars {
            if let last = out.last, let joined = hangul(last, scalar) {
                out.removeLast()
                out.append(joined)
            } else {
                out.append(scalar)
            }
        }
        return String(out)
    }

    private static func hangul(_ a: Unicode.Scalar, _ b: Unicode.Scalar) -> Unicode.Scalar? {
        let sBase: UInt32 = 0xAC00, lBase: UInt32 = 0x1100, vBase: UInt32 = 0x1161, tBase: UInt32 = 0x11A7
        let lCount: UInt32 = 19, vCount: UInt32 = 21, tCount: UInt32 = 28, sCount: UInt32 = 11172
        if a.value >= lBase && a.value < lBase + lCount && b.value >= vBase && b.value < vBase + vCount {
            return Unicode.Scalar(sBase + ((a.value - lBase) * vCount + (b.value - vBase)) * tCount)
        }
        if a.value >= sBase && a.value < sBase + sCount && (a.value - sBase) % tCount == 0
            && b.value > tBase && b.value < tBase + tCount {
            return Unicode.Scalar(a.value + (b.value - tBase))
        }
        return nil
    }
}
