/// Splits a template into text and tags, applying the whitespace rules transformers renders chat
/// templates with: `trim_blocks` (the newline after a block or comment tag goes),
/// `lstrip_blocks` (spaces before a block tag on its own line go), `-` and `+` markers, and the
/// template's single trailing newline dropped.
enum JinjaLexer {
    enum Token: Equatable, Sendable {
        case name(String)
        case string(String)
        case int(Int)
        case double(Double)
        case op(String)
    }

    enum Chunk: Equatable, Sendable {
        case text(String)
        case output([Token], line: Int)
        case statement([Token], line: Int)
    }

    private enum Kind { case output, statement, comment }

    private struct Tag {
        var kind: Kind
        var tokens: [Token]
        var trimLeft = false, keepLeft = false, trimRight = false
        var line: Int
    }

    private enum Raw {
        case text([Unicode.Scalar])
        case tag(Tag)
    }

    static let maxTemplateScalars = 1 << 20

    static func chunks(_ source: String) throws -> [Chunk] {
        var src = Array(source.unicodeScalars)
        guard src.count <= maxTemplateScalars else { throw ChatTemplateError.limit("the template is longer than \(maxTemplateScalars) characters") }
        if src.last == "\n" { src.removeLast() }
        var raw: [Raw] = []
        var pos = 0, line = 1
        var text: [Unicode.Scalar] = []
        while pos < src.count {
            let c = src[pos]
            if c == "{", pos + 1 < src.count, let kind = kindOf(src[pos + 1]) {
                if !text.isEmpty { raw.append(.text(text)); text = [] }
                var tag = Tag(kind: kind, tokens: [], line: line)
                pos += 2
                if pos < src.count, src[pos] == "-" { tag.trimLeft = true; pos += 1 }
                else if pos < src.count, src[pos] == "+" { tag.keepLeft = true; pos += 1 }
                if kind == .comment {
                    while pos + 1 < src.count, !(src[pos] == "#" && src[pos + 1] == "}") {
                        if src[pos] == "\n" { line += 1 }
                        pos += 1
                    }
                    guard pos + 1 < src.count else { throw ChatTemplateError.syntax("line \(tag.line): unclosed comment") }
                    if src[pos - 1] == "-" { tag.trimRight = true }
                    pos += 2
                } else {
                    try lexTag(src, &pos, &line, &tag)
                }
                raw.append(.tag(tag))
            } else {
                if c == "\n" { line += 1 }
                text.append(c)
                pos += 1
            }
        }
        if !text.isEmpty { raw.append(.text(text)) }
        return applyWhitespace(raw)
    }

    private static func kindOf(_ c: Unicode.Scalar) -> Kind? {
        switch c {
        case "{": return .output
        case "%": return .statement
        case "#": return .comment
        default: return nil
        }
    }

    private static func isSpace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace }

    private static func applyWhitespace(_ raw: [Raw]) -> [Chunk] {
        var out: [Chunk] = []
        for (i, piece) in raw.enumerated() {
            switch piece {
            case .tag(let tag):
                switch tag.kind {
                case .output: out.append(.output(tag.tokens, line: tag.line))
                case .statement: out.append(.statement(tag.tokens, line: tag.line))
                case .comment: break
                }
            case .text(var t):
                var lineStarting = i == 0
                if i > 0, case .tag(let prev) = raw[i - 1] {
                    if prev.trimRight {
                        let n = t.prefix { isSpace($0) }.count
                        lineStarting = n > 0 && t[n - 1] == "\n"
                        t.removeFirst(n)
                    } else if prev.kind != .output, t.first == "\n" {
                        t.removeFirst()
                        lineStarting = true
                    }
                }
                if i + 1 < raw.count, case .tag(let next) = raw[i + 1] {
                    if next.trimLeft {
                        while let last = t.last, isSpace(last) { t.removeLast() }
                    } else if next.kind != .output && !next.keepLeft {
                        let lineStart = (t.lastIndex(of: "\n").map { $0 + 1 }) ?? 0
                        if (lineStart > 0 || lineStarting) && lineStart < t.count && t[lineStart...].allSatisfy(isSpace) {
                            t.removeLast(t.count - lineStart)
                        }
                    }
                }
                if !t.isEmpty {
                    var s = String.UnicodeScalarView()
                    s.append(contentsOf: t)
                    out.append(.text(String(s)))
                }
            }
        }
        return out
    }

    private static let operators = ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=",
                                    "(", ")", "[", "]", "{", "}", ".", ",", ":", "|"]

    private static func lexTag(_ src: [Unicode.Scalar], _ pos: inout Int, _ line: inout Int, _ tag: inout Tag) throws {
        let close: Unicode.Scalar = tag.kind == .output ? "}" : "%"
        func at(_ k: Int) -> Unicode.Scalar? { k < src.count ? src[k] : nil }
        while true {
            guard pos < src.count else { throw ChatTemplateError.syntax("line \(tag.line): unclosed tag") }
            let c = src[pos]
            if isSpace(c) {
                if c == "\n" { line += 1 }
                pos += 1
                continue
            }
            if (c == "-" || c == "+"), at(pos + 1) == close, at(pos + 2) == "}" {
                tag.trimRight = c == "-"
                pos += 3
                return
            }
            if c == close, at(pos + 1) == "}" {
                pos += 2
                return
            }
            if c == "'" || c == "\"" {
                tag.tokens.append(.string(try lexString(src, &pos, &line, quote: c, tagLine: tag.line)))
                continue
            }
            if c.properties.numericType == .decimal && c.isASCII {
                var j = pos
                while let d = at(j), d.isASCII, d.properties.numericType == .decimal { j += 1 }
                var isFloat = false
                if at(j) == ".", let d = at(j + 1), d.isASCII, d.properties.numericType == .decimal {
                    isFloat = true
                    j += 1
                    while let d = at(j), d.isASCII, d.properties.numericType == .decimal { j += 1 }
                }
                let literal = String(String.UnicodeScalarView(src[pos..<j]))
                if isFloat {
                    tag.tokens.append(.double(Double(literal) ?? 0))
                } else {
                    guard let n = Int(literal) else { throw ChatTemplateError.syntax("line \(tag.line): number \(literal) is too large") }
                    tag.tokens.append(.int(n))
                }
                pos = j
                continue
            }
            if c == "_" || (c.isASCII && c.properties.isAlphabetic) {
                var j = pos
                while let d = at(j), d == "_" || (d.isASCII && (d.properties.isAlphabetic || d.properties.numericType == .decimal)) { j += 1 }
                tag.tokens.append(.name(String(String.UnicodeScalarView(src[pos..<j]))))
                pos = j
                continue
            }
            guard let op = operators.first(where: { op in
                op.unicodeScalars.enumerated().allSatisfy { at(pos + $0.offset) == $0.element }
            }) else {
                throw ChatTemplateError.syntax("line \(line): unexpected character \(String(c).debugDescription)")
            }
            tag.tokens.append(.op(op))
            pos += op.unicodeScalars.count
        }
    }

    /// A string literal with Python's escapes (`\n`, `\t`, `\\`, `\'`, `\xHH`, `\uHHHH`, ...).
    private static func lexString(_ src: [Unicode.Scalar], _ pos: inout Int, _ line: inout Int,
                                  quote: Unicode.Scalar, tagLine: Int) throws -> String {
        var out = String.UnicodeScalarView()
        pos += 1
        while pos < src.count, src[pos] != quote {
            var c = src[pos]
            if c == "\n" { line += 1 }
            if c == "\\", pos + 1 < src.count {
                pos += 1
                c = src[pos]
                switch c {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "0": out.append("\0")
                case "a": out.append("\u{07}")
                case "b": out.append("\u{08}")
                case "f": out.append("\u{0C}")
                case "v": out.append("\u{0B}")
                case "\\", "'", "\"": out.append(c)
                case "\n": break
                case "x", "u", "U":
                    let width = c == "x" ? 2 : c == "u" ? 4 : 8
                    let digits = String(String.UnicodeScalarView(src[(pos + 1)..<min(src.count, pos + 1 + width)]))
                    guard digits.count == width, let v = UInt32(digits, radix: 16), let s = Unicode.Scalar(v) else {
                        throw ChatTemplateError.syntax("line \(tagLine): bad \\\(c) escape in a string")
                    }
                    out.append(s)
                    pos += width
                default:
                    out.append("\\")
                    out.append(c)
                }
            } else {
                out.append(c)
            }
            pos += 1
        }
        guard pos < src.count else { throw ChatTemplateError.syntax("line \(tagLine): unclosed string") }
        pos += 1
        return String(out)
    }
}
