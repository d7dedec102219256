import Foundation

/// The operators, global functions and methods (Python's `str` and `dict` methods) that chat
/// templates use, with Python's results; filters and tests are in JinjaFilters.swift. Anything
/// else is refused by name.
enum JinjaBuiltins {
    static let maxRange = 100_000

    static func iterate(_ v: JinjaValue) throws -> [JinjaValue] {
        switch v {
        case .undefined: return []
        case .array(let a): return a
        case .object(let o): return o.keys.map { .string($0) }
        case .string(let s): return s.map { .string(String($0)) }
        default: throw ChatTemplateError.runtime("'\(v.typeName)' object is not iterable")
        }
    }

    static func attribute(_ base: JinjaValue, _ name: String) throws -> JinjaValue {
        switch base {
        case .object(let o): return o[name] ?? .undefined(name)
        case .namespace(let ns): return ns.object[name] ?? .undefined(name)
        case .undefined(let what): throw ChatTemplateError.runtime("'\(what)' is undefined (reading .\(name))")
        default: return .undefined(name)
        }
    }

    static func item(_ base: JinjaValue, _ index: JinjaValue) throws -> JinjaValue {
        switch (base, index) {
        case (.object(let o), _): return o[index.str] ?? .undefined(index.str)
        case (.namespace(let ns), _): return ns.object[index.str] ?? .undefined(index.str)
        case (.array(let a), _):
            guard let i = index.integer else { return .undefined("[\(index.repr)]") }
            let k = i < 0 ? a.count + i : i
            return k >= 0 && k < a.count ? a[k] : .undefined("[\(i)]")
        case (.string(let s), _):
            guard let i = index.integer else { return .undefined("[\(index.repr)]") }
            let chars = Array(s)
            let k = i < 0 ? chars.count + i : i
            return k >= 0 && k < chars.count ? .string(String(chars[k])) : .undefined("[\(i)]")
        case (.undefined(let what), _): throw ChatTemplateError.runtime("'\(what)' is undefined (reading [\(index.repr)])")
        default: return .undefined("[\(index.repr)]")
        }
    }

    /// Python slicing `[a:b:c]` of lists and strings.
    static func slice(_ base: JinjaValue, _ a: JinjaValue?, _ b: JinjaValue?, _ c: JinjaValue?) throws -> JinjaValue {
        func indices(_ n: Int) throws -> [Int] {
            let step = c?.integer ?? 1
            guard step != 0 else { throw ChatTemplateError.runtime("slice step cannot be zero") }
            func clamp(_ v: JinjaValue?, _ fallback: Int) -> Int {
                guard let i = v?.integer else { return fallback }
                let k = i < 0 ? i + n : i
                return step > 0 ? min(max(k, 0), n) : min(max(k, -1), n - 1)
            }
            let start = clamp(a, step > 0 ? 0 : n - 1), end = clamp(b, step > 0 ? n : -1)
            return Array(stride(from: start, to: end, by: step))
        }
        switch base {
        case .array(let items): return .array(try indices(items.count).map { items[$0] })
        case .string(let s):
            let chars = Array(s)
            return .string(String(try indices(chars.count).map { chars[$0] }))
        case .undefined: return .undefined("slice")
        default: throw ChatTemplateError.runtime("'\(base.typeName)' object is not subscriptable")
        }
    }

    static func binary(_ op: String, _ l: JinjaValue, _ r: JinjaValue) throws -> JinjaValue {
        switch op {
        case "==": return .bool(l.equals(r))
        case "!=": return .bool(!l.equals(r))
        case "<", ">", "<=", ">=":
            guard let c = l.compare(r) else { throw ChatTemplateError.runtime("'\(op)' not supported between \(l.typeName) and \(r.typeName)") }
            switch op {
            case "<": return .bool(c < 0)
            case ">": return .bool(c > 0)
            case "<=": return .bool(c <= 0)
            default: return .bool(c >= 0)
            }
        case "in": return .bool(try contains(r, l))
        case "not in": return .bool(!(try contains(r, l)))
        case "~": return .string(try bounded(l.str, r.str))
        case "+":
            switch (l, r) {
            case (.string(let a), .string(let b)): return .string(try bounded(a, b))
            case (.array(let a), .array(let b)):
                guard a.count + b.count <= maxRange else { throw ChatTemplateError.limit("a list longer than \(maxRange) items") }
                return .array(a + b)
            default: break
            }
        case "*":
            if case .string(let s) = l, let n = r.integer { return try repeated(s, n) }
            if case .string(let s) = r, let n = l.integer { return try repeated(s, n) }
        default: break
        }
        if case .undefined(let what) = l { throw ChatTemplateError.runtime("'\(what)' is undefined (in \(op))") }
        if case .undefined(let what) = r { throw ChatTemplateError.runtime("'\(what)' is undefined (in \(op))") }
        if let a = l.integer, let b = r.integer, op != "/" {
            switch op {
            case "+": return .int(a &+ b)
            case "-": return .int(a &- b)
            case "*": return .int(a &* b)
            case "//", "%":
                guard b != 0 else { throw ChatTemplateError.runtime("integer division or modulo by zero") }
                let q = Int((Double(a) / Double(b)).rounded(.down))
                return op == "//" ? .int(q) : .int(a - q * b)
            case "**":
                guard b >= 0, b < 64 else { return .double(pow(Double(a), Double(b))) }
                return .int(Int(clamping: Int64(pow(Double(a), Double(b)).clamped)))
            default: break
            }
        }
        guard let a = l.number, let b = r.number else {
            throw ChatTemplateError.runtime("unsupported operand types for \(op): \(l.typeName) and \(r.typeName)")
        }
        switch op {
        case "+": return .double(a + b)
        case "-": return .double(a - b)
        case "*": return .double(a * b)
        case "/":
            guard b != 0 else { throw ChatTemplateError.runtime("division by zero") }
            return .double(a / b)
        case "//":
            guard b != 0 else { throw ChatTemplateError.runtime("division by zero") }
            return .double((a / b).rounded(.down))
        case "%":
            guard b != 0 else { throw ChatTemplateError.runtime("modulo by zero") }
            return .double(a - (a / b).rounded(.down) * b)
        case "**": return .double(pow(a, b))
        default: throw ChatTemplateError.unsupported("the operator \(op)")
        }
    }

    /// `a + b`, refused when the result would be longer than a render may write.
    private static func bounded(_ a: String, _ b: String) throws -> String {
        guard a.utf8.count + b.utf8.count <= JinjaTemplate.maxOutput else {
            throw ChatTemplateError.limit("a string longer than \(JinjaTemplate.maxOutput) bytes")
        }
        return a + b
    }

    private static func repeated(_ s: String, _ n: Int) throws -> JinjaValue {
        guard n <= 0 || s.utf8.count.multipliedReportingOverflow(by: n).partialValue <= JinjaTemplate.maxOutput else {
            throw ChatTemplateError.limit("string repeated beyond \(JinjaTemplate.maxOutput) bytes")
        }
        return .string(n > 0 ? String(repeating: s, count: n) : "")
    }

    static func contains(_ container: JinjaValue, _ item: JinjaValue) throws -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let sub) = item else { throw ChatTemplateError.runtime("'in <string>' requires a string, not \(item.typeName)") }
            return sub.isEmpty || s.contains(sub)
        case .array(let a): return a.contains { $0.equals(item) }
        case .object(let o): return o[item.str] != nil && item.isString
        case .namespace(let ns): return ns.object[item.str] != nil
        case .undefined: return false
        default: throw ChatTemplateError.runtime("argument of type '\(container.typeName)' is not iterable")
        }
    }

    // MARK: Functions

    static func function(_ name: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        switch name {
        case "raise_exception":
            throw ChatTemplateError.raised(args.first?.str ?? "")
        case "namespace":
            var o = JinjaObject()
            if case .object(let initial)? = args.first { o = initial }
            for (k, v) in kwargs { o[k] = v }
            return .namespace(JinjaNamespace(o))
        case "dict":
            return .object(JinjaObject(kwargs))
        case "range":
            let ints = args.compactMap(\.integer)
            guard ints.count == args.count, (1...3).contains(ints.count) else { throw ChatTemplateError.runtime("range() takes 1 to 3 integers") }
            let (start, end, step) = ints.count == 1 ? (0, ints[0], 1) : (ints[0], ints[1], ints.count == 3 ? ints[2] : 1)
            guard step != 0 else { throw ChatTemplateError.runtime("range() step cannot be zero") }
            let count = max(0, (end - start + step + (step > 0 ? -1 : 1)) / step)
            guard count <= maxRange else { throw ChatTemplateError.limit("range() of more than \(maxRange) items") }
            return .array(stride(from: start, to: end, by: step).map { .int($0) })
        case "strftime_now":
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.dateFormat = strftimeToICU(args.first?.str ?? "")
            return .string(formatter.string(from: Date()))
        default:
            throw ChatTemplateError.unsupported("the function \(name)()")
        }
    }

    /// The strftime directives chat templates use (`%d %B %Y` and friends).
    static func strftimeToICU(_ f: String) -> String {
        let map: [Character: String] = ["d": "dd", "m": "MM", "Y": "yyyy", "y": "yy", "B": "MMMM", "b": "MMM",
                                        "H": "HH", "M": "mm", "S": "ss", "A": "EEEE", "a": "EEE", "%": "%", "e": "d"]
        var out = "", percent = false
        for c in f {
            if percent {
                out += map[c] ?? String(c)
                percent = false
            } else if c == "%" {
                percent = true
            } else if c.isLetter {
                out += "'\(c)'"
            } else {
                out.append(c)
            }
        }
        return out
    }

    // MARK: Methods

    static func method(_ base: JinjaValue, _ name: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        switch base {
        case .string(let s): return try stringMethod(s, name, args, kwargs)
        case .object(let o):
            switch name {
            case "items": return .array(o.keys.map { .array([.string($0), o[$0]!]) })
            case "keys": return .array(o.keys.map { .string($0) })
            case "values": return .array(o.keys.map { o[$0]! })
            case "get": return o[args.first?.str ?? ""] ?? (args.count > 1 ? args[1] : .none)
            default: break
            }
        case .undefined(let what):
            throw ChatTemplateError.runtime("'\(what)' is undefined (calling .\(name)())")
        default: break
        }
        throw ChatTemplateError.unsupported("the method \(base.typeName).\(name)()")
    }

    static func isPythonSpace(_ c: Character) -> Bool { c.unicodeScalars.allSatisfy { $0.properties.isWhitespace } }

    private static func stringMethod(_ s: String, _ name: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        func stripSet() -> ((Character) -> Bool) {
            if case .string(let chars)? = args.first { return { chars.contains($0) } }
            return isPythonSpace
        }
        func affixes() -> [String] {
            if case .array(let list)? = args.first { return list.map(\.str) }
            return [args.first?.str ?? ""]
        }
        switch name {
        case "startswith": return .bool(affixes().contains { s.unicodeScalars.starts(with: $0.unicodeScalars) })
        case "endswith": return .bool(affixes().contains { s.unicodeScalars.reversed().starts(with: $0.unicodeScalars.reversed()) })
        case "strip": return .string(pyStrip(s, stripSet(), leading: true, trailing: true))
        case "lstrip": return .string(pyStrip(s, stripSet(), leading: true, trailing: false))
        case "rstrip": return .string(pyStrip(s, stripSet(), leading: false, trailing: true))
        case "upper": return .string(s.uppercased())
        case "lower": return .string(s.lowercased())
        case "title": return .string(s.capitalized)
        case "capitalize": return .string(s.prefix(1).uppercased() + s.dropFirst().lowercased())
        case "split":
            let sep = args.first.flatMap { if case .string(let x) = $0 { x } else { nil } } ?? kwargs.first { $0.0 == "sep" }.map { $0.1.str }
            let maxSplit = (args.count > 1 ? args[1].integer : kwargs.first { $0.0 == "maxsplit" }?.1.integer) ?? -1
            return .array(pySplit(s, sep, maxSplit).map { .string($0) })
        case "replace":
            guard args.count >= 2 else { throw ChatTemplateError.runtime("replace() takes two strings") }
            return .string(pyReplace(s, args[0].str, args[1].str, args.count > 2 ? (args[2].integer ?? -1) : -1))
        case "join":
            return .string(try iterate(args.first ?? .array([])).map(\.str).joined(separator: s))
        case "count":
            let sub = args.first?.str ?? ""
            return .int(sub.isEmpty ? s.count + 1 : s.components(separatedBy: sub).count - 1)
        case "find":
            guard let r = s.range(of: args.first?.str ?? "") else { return .int(-1) }
            return .int(s.distance(from: s.startIndex, to: r.lowerBound))
        case "splitlines":
            return .array(s.split(omittingEmptySubsequences: false) { $0.isNewline }.map { .string(String($0)) }.dropLast(s.last?.isNewline == true ? 1 : 0).map { $0 })
        default:
            throw ChatTemplateError.unsupported("the method str.\(name)()")
        }
    }

    static func pyStrip(_ s: String, _ drop: (Character) -> Bool, leading: Bool, trailing: Bool) -> String {
        var sub = Substring(s)
        if leading { sub = sub.drop(while: drop) }
        if trailing { while let last = sub.last, drop(last) { sub = sub.dropLast() } }
        return String(sub)
    }

    /// Python's `str.split`: on runs of whitespace without a separator, else on the separator exactly.
    static func pySplit(_ s: String, _ sep: String?, _ maxSplit: Int) -> [String] {
        guard let sep, !sep.isEmpty else {
            var parts: [String] = []
            var rest = Substring(s).drop(while: isPythonSpace)
            while !rest.isEmpty {
                if maxSplit >= 0 && parts.count == maxSplit {
                    parts.append(pyStrip(String(rest), isPythonSpace, leading: false, trailing: true))
                    break
                }
                let word = rest.prefix { !isPythonSpace($0) }
                parts.append(String(word))
                rest = rest.dropFirst(word.count).drop(while: isPythonSpace)
            }
            return parts
        }
        var parts: [String] = []
        var rest = s[...]
        while maxSplit < 0 || parts.count < maxSplit, let r = rest.range(of: sep, options: .literal) {
            parts.append(String(rest[..<r.lowerBound]))
            rest = rest[r.upperBound...]
        }
        parts.append(String(rest))
        return parts
    }

    static func pyReplace(_ s: String, _ old: String, _ new: String, _ count: Int) -> String {
        guard !old.isEmpty else { return s }
        var out = "", rest = s[...], n = 0
        while count < 0 || n < count, let r = rest.range(of: old, options: .literal) {
            out += rest[..<r.lowerBound] + new
            rest = rest[r.upperBound...]
            n += 1
        }
        return out + rest
    }
}

extension JinjaValue {
    var isString: Bool { if case .string = self { return true } else { return false } }
}

extension Double {
    /// Clamped to the Int64 range (for integer powers).
    fileprivate var clamped: Double { Swift.min(Swift.max(self, -9.2e18), 9.2e18) }
}
