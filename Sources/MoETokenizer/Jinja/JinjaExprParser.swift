/// Parses the tokens of one tag into an expression, recursive descent with Jinja's operator
/// precedence: conditional, `or`, `and`, `not`, comparisons and `in`, `+ -`, `~`, `* / // %`,
/// `**`, unary minus, then postfix (attributes, subscripts, calls), filters and `is` tests.
struct ExprParser {
    typealias Token = JinjaLexer.Token
    let tokens: [Token]
    let line: Int
    var at = 0
    var depth = 0

    init(tokens: [Token], line: Int) {
        self.tokens = tokens
        self.line = line
    }

    var peek: Token? { at < tokens.count ? tokens[at] : nil }

    mutating func accept(_ t: Token) -> Bool {
        if peek == t { at += 1; return true }
        return false
    }

    func error(_ message: String) -> ChatTemplateError { .syntax("line \(line): \(message)") }

    mutating func expect(_ t: Token) throws {
        guard accept(t) else { throw error("expected \(Self.describe(t)), found \(peek.map(Self.describe) ?? "the end of the tag")") }
    }

    mutating func expectEnd() throws {
        if let t = peek { throw error("unexpected \(Self.describe(t))") }
    }

    static func describe(_ t: Token) -> String {
        switch t {
        case .name(let n): return n
        case .string(let s): return s.debugDescription
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .op(let o): return o
        }
    }

    mutating func parseAll() throws -> JinjaExpr {
        let e = try parseTupleOrExpression()
        try expectEnd()
        return e
    }

    /// `a, b` (a tuple, as a list) or one expression.
    mutating func parseTupleOrExpression() throws -> JinjaExpr {
        let first = try parseExpression()
        guard peek == .op(",") else { return first }
        var items = [first]
        while accept(.op(",")) {
            if peek == nil { break }
            items.append(try parseExpression())
        }
        return .list(items)
    }

    mutating func parseExpression(allowConditional: Bool = true) throws -> JinjaExpr {
        depth += 1
        defer { depth -= 1 }
        guard depth <= JinjaParser.maxDepth else { throw ChatTemplateError.limit("line \(line): an expression nested deeper than \(JinjaParser.maxDepth)") }
        let value = try parseOr()
        guard allowConditional, accept(.name("if")) else { return value }
        let condition = try parseOr()
        let otherwise = accept(.name("else")) ? try parseExpression() : nil
        return .conditional(then: value, condition: condition, otherwise: otherwise)
    }

    mutating func parseOr() throws -> JinjaExpr {
        var left = try parseAnd()
        while accept(.name("or")) { left = .binary("or", left, try parseAnd()) }
        return left
    }

    mutating func parseAnd() throws -> JinjaExpr {
        var left = try parseNot()
        while accept(.name("and")) { left = .binary("and", left, try parseNot()) }
        return left
    }

    mutating func parseNot() throws -> JinjaExpr {
        if accept(.name("not")) {
            depth += 1
            defer { depth -= 1 }
            guard depth <= JinjaParser.maxDepth else { throw ChatTemplateError.limit("line \(line): too many nested not") }
            return .unary("not", try parseNot())
        }
        return try parseCompare()
    }

    mutating func parseCompare() throws -> JinjaExpr {
        var left = try parseMath1()
        while true {
            if case .op(let o)? = peek, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                at += 1
                left = .binary(o, left, try parseMath1())
            } else if accept(.name("in")) {
                left = .binary("in", left, try parseMath1())
            } else if peek == .name("not"), at + 1 < tokens.count, tokens[at + 1] == .name("in") {
                at += 2
                left = .binary("not in", left, try parseMath1())
            } else {
                return left
            }
        }
    }

    mutating func parseMath1() throws -> JinjaExpr {
        var left = try parseConcat()
        while case .op(let o)? = peek, o == "+" || o == "-" {
            at += 1
            left = .binary(o, left, try parseConcat())
        }
        return left
    }

    mutating func parseConcat() throws -> JinjaExpr {
        var left = try parseMath2()
        while accept(.op("~")) { left = .binary("~", left, try parseMath2()) }
        return left
    }

    mutating func parseMath2() throws -> JinjaExpr {
        var left = try parsePow()
        while case .op(let o)? = peek, ["*", "/", "//", "%"].contains(o) {
            at += 1
            left = .binary(o, left, try parsePow())
        }
        return left
    }

    mutating func parsePow() throws -> JinjaExpr {
        var left = try parseUnary()
        while accept(.op("**")) { left = .binary("**", left, try parseUnary()) }
        return left
    }

    mutating func parseUnary() throws -> JinjaExpr {
        if case .op(let o)? = peek, o == "-" || o == "+" {
            at += 1
            depth += 1
            defer { depth -= 1 }
            guard depth <= JinjaParser.maxDepth else { throw ChatTemplateError.limit("line \(line): too many nested signs") }
            return try parseFilters(.unary(o, try parseUnary()))
        }
        return try parseFilters(try parsePostfix(try parsePrimary()))
    }

    mutating func parsePrimary() throws -> JinjaExpr {
        guard let t = peek else { throw error("expected an expression") }
        at += 1
        switch t {
        case .string(var s):
            while case .string(let more)? = peek { s += more; at += 1 }   // adjacent literals join
            return .literal(.string(s))
        case .int(let i): return .literal(.int(i))
        case .double(let d): return .literal(.double(d))
        case .name(let n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case .op("("):
            if accept(.op(")")) { return .list([]) }
            let e = try parseTupleOrExpression()
            try expect(.op(")"))
            return e
        case .op("["):
            var items: [JinjaExpr] = []
            while !accept(.op("]")) {
                items.append(try parseExpression())
                if !accept(.op(",")) { try expect(.op("]")); break }
            }
            return .list(items)
        case .op("{"):
            var pairs: [(JinjaExpr, JinjaExpr)] = []
            while !accept(.op("}")) {
                let key = try parseExpression()
                try expect(.op(":"))
                pairs.append((key, try parseExpression()))
                if !accept(.op(",")) { try expect(.op("}")); break }
            }
            return .dict(pairs)
        default:
            throw error("unexpected \(Self.describe(t))")
        }
    }

    mutating func parsePostfix(_ base: JinjaExpr) throws -> JinjaExpr {
        var e = base
        while true {
            if accept(.op(".")) {
                guard case .name(let n)? = peek else { throw error("expected an attribute name after .") }
                at += 1
                e = .attribute(e, n)
            } else if accept(.op("[")) {
                e = try parseSubscript(e)
            } else if peek == .op("(") {
                at += 1
                let (args, kwargs) = try parseArguments()
                e = .call(e, args, kwargs)
            } else {
                return e
            }
        }
    }

    mutating func parseSubscript(_ base: JinjaExpr) throws -> JinjaExpr {
        var parts: [JinjaExpr?] = [nil]
        var colons = 0
        while !accept(.op("]")) {
            if accept(.op(":")) {
                colons += 1
                guard colons <= 2 else { throw error("too many : in a slice") }
                parts.append(nil)
                continue
            }
            guard parts[parts.count - 1] == nil else { throw error("expected ] or :") }
            parts[parts.count - 1] = try parseExpression()
        }
        if colons == 0 {
            guard let index = parts[0] else { throw error("empty subscript") }
            return .index(base, index)
        }
        while parts.count < 3 { parts.append(nil) }
        return .slice(base, parts[0], parts[1], parts[2])
    }

    /// After `(`: positional and keyword arguments up to `)`.
    mutating func parseArguments() throws -> ([JinjaExpr], [(String, JinjaExpr)]) {
        var args: [JinjaExpr] = []
        var kwargs: [(String, JinjaExpr)] = []
        while !accept(.op(")")) {
            if case .name(let n)? = peek, at + 1 < tokens.count, tokens[at + 1] == .op("=") {
                at += 2
                kwargs.append((n, try parseExpression()))
            } else {
                args.append(try parseExpression())
            }
            if !accept(.op(",")) { try expect(.op(")")); break }
        }
        return (args, kwargs)
    }

    /// `| name(args)` filters and `is [not] name [arg]` tests, left to right.
    mutating func parseFilters(_ base: JinjaExpr) throws -> JinjaExpr {
        var e = base
        while true {
            if accept(.op("|")) {
                guard case .name(let n)? = peek else { throw error("expected a filter name after |") }
                at += 1
                var args: [JinjaExpr] = [], kwargs: [(String, JinjaExpr)] = []
                if accept(.op("(")) { (args, kwargs) = try parseArguments() }
                e = .filter(e, n, args, kwargs)
            } else if accept(.name("is")) {
                let negated = accept(.name("not"))
                guard case .name(var n)? = peek else { throw error("expected a test name after is") }
                at += 1
                if n == "none" || n == "None" { n = "none" }
                var args: [JinjaExpr] = []
                if accept(.op("(")) {
                    (args, _) = try parseArguments()
                } else if let t = peek, Self.startsArgument(t) {
                    args = [try parsePostfix(try parsePrimary())]
                }
                e = .test(e, n, args, negated: negated)
            } else {
                return e
            }
        }
    }

    /// Whether a token can start a test's single argument (`is divisibleby 3`, `is equalto 'x'`).
    static func startsArgument(_ t: Token) -> Bool {
        switch t {
        case .string, .int, .double: return true
        case .name(let n): return !["and", "or", "if", "else", "not", "in", "is"].contains(n)
        case .op(let o): return o == "(" || o == "["
        }
    }
}
