/// The split regexes that byte-level BPE tokenizers carry, matched by hand. Each is a
/// leftmost-first alternation as Oniguruma (the `tokenizers` library's regex engine) runs it;
/// the functions below give the end of the alternative that wins at a position, with the same
/// greedy and backtracking outcome. Any other pattern is refused by name when loading.
enum SplitPattern: Sendable {
    /// Qwen2 / Qwen2.5 / Qwen3: `\p{N}` takes one digit at a time.
    case qwen2
    /// Llama-3 and cl100k: the same with `\p{N}{1,3}`.
    case llama3
    /// GPT-2 (the ByteLevel pre-tokenizer's own regex, `use_regex: true`).
    case gpt2

    static let qwen2Source = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let llama3Source = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let gpt2Source = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    /// The pattern a tokenizer.json regex names, or nil for one this matcher does not know.
    init?(source: String) {
        switch source {
        case Self.qwen2Source: self = .qwen2
        case Self.llama3Source: self = .llama3
        case Self.gpt2Source: self = .gpt2
        default: return nil
        }
    }

    /// Splits `text` into consecutive pieces (the `Isolated` behaviour: every match is a piece,
    /// and so is any text between matches). Returns the piece boundaries as scalar index ranges.
    func split(_ text: [Unicode.Scalar]) -> [Range<Int>] {
        let classes = text.map(CharClass.init)
        var pieces: [Range<Int>] = []
        var gapStart = 0
        var i = 0
        while i < text.count {
            if let end = matchEnd(text, classes, at: i) {
                if gapStart < i { pieces.append(gapStart..<i) }
                pieces.append(i..<end)
                i = end
                gapStart = end
            } else {
                i += 1
            }
        }
        if gapStart < text.count { pieces.append(gapStart..<text.count) }
        return pieces
    }

    private func matchEnd(_ t: [Unicode.Scalar], _ c: [CharClass], at i: Int) -> Int? {
        switch self {
        case .qwen2, .llama3:
            if let e = contraction(t, at: i, ignoreCase: true) { return e }
            if let e = optionalNonLetterThenLetters(c, at: i) { return e }
            if c[i] == .number {
                var e = i + 1
                if self == .llama3 { while e < c.count && e < i + 3 && c[e] == .number { e += 1 } }
                return e
            }
            if let e = spaceThenRun(t, c, at: i, of: .other) {
                var end = e
                while end < c.count && c[end] == .newline { end += 1 }
                return end
            }
            if let e = whitespaceThroughLastNewline(c, at: i) { return e }
            return whitespaceRun(c, at: i)
        case .gpt2:
            if let e = contraction(t, at: i, ignoreCase: false) { return e }
            if let e = spaceThenRun(t, c, at: i, of: .letter) { return e }
            if let e = spaceThenRun(t, c, at: i, of: .number) { return e }
            if let e = spaceThenRun(t, c, at: i, of: .other) { return e }
            return whitespaceRun(c, at: i)
        }
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d`, optionally case-insensitive (Oniguruma folds `ſ` to `s`).
    private func contraction(_ t: [Unicode.Scalar], at i: Int, ignoreCase: Bool) -> Int? {
        guard t[i] == "'", i + 1 < t.count else { return nil }
        func letter(_ k: Int) -> Unicode.Scalar? {
            guard k < t.count else { return nil }
            let s = t[k]
            guard ignoreCase else { return s }
            if s == "\u{017F}" { return "s" }
            if s.value >= 0x41 && s.value <= 0x5A { return Unicode.Scalar(s.value + 0x20) }
            return s
        }
        switch letter(i + 1) {
        case "s", "t", "m", "d": return i + 2
        case "r", "v": return letter(i + 2) == "e" ? i + 3 : nil
        case "l": return letter(i + 2) == "l" ? i + 3 : nil
        default: return nil
        }
    }

    /// `[^\r\n\p{L}\p{N}]?\p{L}+`
    private func optionalNonLetterThenLetters(_ c: [CharClass], at i: Int) -> Int? {
        var j = i
        if c[j] != .letter {
            guard c[j] != .newline && c[j] != .number, j + 1 < c.count, c[j + 1] == .letter else { return nil }
            j += 1
        }
        while j < c.count && c[j] == .letter { j += 1 }
        return j
    }

    /// ` ?X+` for a class X (letters, numbers, or neither-space-letter-nor-number).
    private func spaceThenRun(_ t: [Unicode.Scalar], _ c: [CharClass], at i: Int, of cls: CharClass) -> Int? {
        var j = i
        if t[j] == " " && j + 1 < c.count && c[j + 1] == cls { j += 1 }
        guard c[j] == cls else { return nil }
        while j < c.count && c[j] == cls { j += 1 }
        return j
    }

    /// `\s*[\r\n]+`: the whitespace run up to and including its last CR or LF.
    private func whitespaceThroughLastNewline(_ c: [CharClass], at i: Int) -> Int? {
        var j = i, lastNewline = -1
        while j < c.count && c[j].isSpace {
            if c[j] == .newline { lastNewline = j }
            j += 1
        }
        return lastNewline >= 0 ? lastNewline + 1 : nil
    }

    /// `\s+(?!\S)|\s+`: a whitespace run, leaving its last space to the next word unless the
    /// run ends the text (or is a single space, which `\s+` then takes whole).
    private func whitespaceRun(_ c: [CharClass], at i: Int) -> Int? {
        guard c[i].isSpace else { return nil }
        var j = i
        while j < c.count && c[j].isSpace { j += 1 }
        if j == c.count || j - i == 1 { return j }
        return j - 1
    }
}

/// What the split patterns ask of a character: `\p{L}`, `\p{N}`, `[\r\n]`, other `\s`
/// (Unicode White_Space), or none of these.
enum CharClass: Sendable, Equatable {
    case letter, number, newline, space, other

    var isSpace: Bool { self == .space || self == .newline }

    init(_ s: Unicode.Scalar) {
        if s.value < 0x80 {
            switch s.value {
            case 0x0A, 0x0D: self = .newline
            case 0x09, 0x0B, 0x0C, 0x20: self = .space
            case 0x30...0x39: self = .number
            case 0x41...0x5A, 0x61...0x7A: self = .letter
            default: self = .other
            }
            return
        }
        let p = s.properties
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            self = .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            self = .number
        default:
            self = p.isWhitespace ? .space : .other
        }
    }
}
