/// Parses a template's statements (`if`, `for`, `set`, ...) into nodes; the expressions inside
/// tags are parsed by ExprParser (JinjaExprParser.swift). Refuses unsupported statements by name.
struct JinjaParser {
    typealias Token = JinjaLexer.Token
    static let maxDepth = 64

    private var chunks: [JinjaLexer.Chunk]
    private var at = 0
    private var depth = 0

    init(_ chunks: [JinjaLexer.Chunk]) { self.chunks = chunks }

    static func parse(_ source: String) throws -> [JinjaNode] {
        var p = JinjaParser(try JinjaLexer.chunks(source))
        let (nodes, end) = try p.nodes(until: [])
        if let end { throw ChatTemplateError.syntax("unexpected {% \(end) %}") }
        return nodes
    }

    /// Nodes up to a statement named in `ends` (returned, not consumed further) or the end.
    private mutating func nodes(until ends: Set<String>) throws -> ([JinjaNode], String?) {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maxDepth else { throw ChatTemplateError.limit("blocks nested deeper than \(Self.maxDepth)") }
        var out: [JinjaNode] = []
        while at < chunks.count {
            let chunk = chunks[at]
            at += 1
            switch chunk {
            case .text(let t): out.append(.text(t))
            case .output(let tokens, let line):
                var e = ExprParser(tokens: tokens, line: line)
                out.append(.output(try e.parseAll()))
            case .statement(let tokens, let line):
                guard case .name(let keyword)? = tokens.first else { throw ChatTemplateError.syntax("line \(line): empty or malformed {% %} tag") }
                if ends.contains(keyword) {
                    at -= 1
                    return (out, keyword)
                }
                out.append(try statement(keyword, Array(tokens.dropFirst()), line: line))
            }
        }
        guard ends.isEmpty else { throw ChatTemplateError.syntax("missing {% \(ends.sorted().joined(separator: " or ")) %}") }
        return (out, nil)
    }

    /// Consumes the end statement found by `nodes(until:)` and returns its tokens.
    private mutating func take(_ keyword: String) -> [Token] {
        guard case .statement(let tokens, _) = chunks[at] else { return [] }
        at += 1
        _ = keyword
        return Array(tokens.dropFirst())
    }

    private mutating func statement(_ keyword: String, _ rest: [Token], line: Int) throws -> JinjaNode {
        switch keyword {
        case "if":
            var branches: [(JinjaExpr, [JinjaNode])] = []
            var condition = rest
            while true {
                var e = ExprParser(tokens: condition, line: line)
                let test = try e.parseAll()
                let (body, end) = try nodes(until: ["elif", "else", "endif"])
                branches.append((test, body))
                let tokens = take(end!)
                if end == "elif" { condition = tokens; continue }
                if end == "else" {
                    let (otherwise, _) = try nodes(until: ["endif"])
                    _ = take("endif")
                    return .conditional(branches, otherwise: otherwise)
                }
                return .conditional(branches, otherwise: [])
            }
        case "for":
            var targets: [String] = []
            var i = 0
            while i < rest.count, case .name(let n) = rest[i], n != "in" {
                targets.append(n)
                i += 1
                if i < rest.count, rest[i] == .op(",") { i += 1 }
            }
            guard !targets.isEmpty, i < rest.count, rest[i] == .name("in") else {
                throw ChatTemplateError.syntax("line \(line): expected {% for name in ... %}")
            }
            var e = ExprParser(tokens: Array(rest[(i + 1)...]), line: line)
            let iterable = try e.parseExpression(allowConditional: false)
            var filter: JinjaExpr?
            if e.accept(.name("if")) { filter = try e.parseExpression(allowConditional: false) }
            if e.accept(.name("recursive")) { throw ChatTemplateError.unsupported("line \(line): recursive for loops") }
            try e.expectEnd()
            let (body, end) = try nodes(until: ["else", "endfor"])
            _ = take(end!)
            var otherwise: [JinjaNode] = []
            if end == "else" {
                (otherwise, _) = try nodes(until: ["endfor"])
                _ = take("endfor")
            }
            return .loop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise)
        case "set":
            guard case .name(let first)? = rest.first else { throw ChatTemplateError.syntax("line \(line): expected a name after set") }
            if rest.count == 1 {
                let (body, _) = try nodes(until: ["endset"])
                _ = take("endset")
                return .setBlock(first, body)
            }
            var i = 1
            var targets = [first]
            var attribute: String?
            if rest[i] == .op("."), i + 1 < rest.count, case .name(let attr) = rest[i + 1] {
                attribute = attr
                i += 2
            } else {
                while i + 1 < rest.count, rest[i] == .op(","), case .name(let n) = rest[i + 1] {
                    targets.append(n)
                    i += 2
                }
            }
            guard i < rest.count, rest[i] == .op("=") else { throw ChatTemplateError.syntax("line \(line): expected = in set") }
            var e = ExprParser(tokens: Array(rest[(i + 1)...]), line: line)
            return .set(targets: targets, attribute: attribute, try e.parseTupleOrExpression())
        case "break": return .breakLoop
        case "continue": return .continueLoop
        case "generation":
            let (body, _) = try nodes(until: ["endgeneration"])
            _ = take("endgeneration")
            return .generation(body)
        case "macro", "call", "filter", "include", "import", "from", "extends", "block", "raw", "with", "autoescape", "do":
            throw ChatTemplateError.unsupported("line \(line): the {% \(keyword) %} statement")
        default:
            throw ChatTemplateError.syntax("line \(line): unknown statement {% \(keyword) %}")
        }
    }
}
