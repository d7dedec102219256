import Foundation

/// The filters, tests, global functions and methods (Python's `str` and `dict` methods) that chat
/// templates call, with Python's results. Anything else is refused by name.
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

    // MARK: Filters

    static func filter(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        func kw(_ key: String, _ position: Int) -> JinjaValue? {
            kwargs.first { $0.0 == key }?.1 ?? (position < args.count ? args[position] : nil)
        }
        switch name {
        case "trim":
            return .string(pyStrip(v.str, kw("chars", 0).map { chars in { chars.str.contains($0) } } ?? isPythonSpace, leading: true, trailing: true))
        case "length", "count":
            switch v {
            case .string(let s): return .int(s.count)
            case .array(let a): return .int(a.count)
            case .object(let o): return .int(o.keys.count)
            case .undefined: return .int(0)
            default: throw ChatTemplateError.runtime("object of type '\(v.typeName)' has no len()")
            }
        case "tojson":
            let indent = kw("indent", 0)?.integer
            return .string(try JinjaJSON.dump(v, indent: indent))
        case "default", "d":
            let fallback = kw("default_value", 0) ?? .string("")
            let boolean = kw("boolean", 1)?.truthy ?? false
            return (boolean ? v.truthy : v.isDefined) ? v : fallback
        case "upper": return .string(v.str.uppercased())
        case "lower": return .string(v.str.lowercased())
        case "title": return .string(v.str.capitalized)
        case "capitalize": return .string(v.str.prefix(1).uppercased() + v.str.dropFirst().lowercased())
        case "string": return .string(v.str)
        case "safe", "e", "escape":
            if name == "safe" { return v }
            throw ChatTemplateError.unsupported("the filter \(name) (HTML escaping)")
        case "first": return try iterate(v).first ?? .undefined("first")
        case "last": return try iterate(v).last ?? .undefined("last")
        case "list": return .array(try iterate(v))
        case "reverse":
            if case .string(let s) = v { return .string(String(s.reversed())) }
            return .array(try iterate(v).reversed())
        case "join":
            let sep = kw("d", 0)?.str ?? ""
            var items = try iterate(v)
            if let attr = kw("attribute", 1)?.str { items = try items.map { try attribute($0, attr) } }
            return .string(items.map(\.str).joined(separator: sep))
        case "int":
            if let i = v.integer { return .int(i) }
            if case .double(let d) = v, d.isFinite { return .int(Int(d)) }
            return .int(Int(v.str.trimmingCharacters(in: .whitespaces)) ?? (kw("default", 0)?.integer ?? 0))
        case "float":
            if let d = v.number { return .double(d) }
            return .double(Double(v.str.trimmingCharacters(in: .whitespaces)) ?? 0)
        case "abs":
            if case .int(let i) = v { return .int(abs(i)) }
            return .double(abs(v.number ?? 0))
        case "replace":
            guard args.count >= 2 else { throw ChatTemplateError.runtime("replace filter takes two strings") }
            return .string(pyReplace(v.str, args[0].str, args[1].str, args.count > 2 ? (args[2].integer ?? -1) : -1))
        case "items":
            guard case .object(let o) = v else { return .array([]) }
            return .array(o.keys.map { .array([.string($0), o[$0]!]) })
        case "selectattr", "rejectattr":
            guard let attr = args.first?.str else { throw ChatTemplateError.runtime("\(name) needs an attribute name") }
            let keep = name == "selectattr"
            return .array(try iterate(v).filter { item in
                let value = try attribute(item, attr)
                let passes = args.count > 1 ? try test(args[1].str, value, Array(args.dropFirst(2))) : value.truthy
                return passes == keep
            })
        case "select", "reject":
            let keep = name == "select"
            return .array(try iterate(v).filter { item in
                let passes = args.isEmpty ? item.truthy : try test(args[0].str, item, Array(args.dropFirst()))
                return passes == keep
            })
        case "map":
            if let attr = kwargs.first(where: { $0.0 == "attribute" })?.1.str {
                return .array(try iterate(v).map { try attribute($0, attr) })
            }
            guard let filterName = args.first?.str else { throw ChatTemplateError.runtime("map needs a filter or attribute=") }
            return .array(try iterate(v).map { try filter(filterName, $0, Array(args.dropFirst()), []) })
        case "unique":
            var seen: [JinjaValue] = []
            for item in try iterate(v) where !seen.contains(where: { $0.equals(item) }) { seen.append(item) }
            return .array(seen)
        case "indent":
            let width = kw("width", 0)?.integer ?? 4
            let first = kw("first", 1)?.truthy ?? false
            let pad = String(repeating: " ", count: max(0, min(width, 1000)))
            let lines = v.str.split(separator: "\n", omittingEmptySubsequences: false)
            return .string(lines.enumerated().map { i, l in (i == 0 && !first) || l.isEmpty ? String(l) : pad + l }.joined(separator: "\n"))
        default:
            throw ChatTemplateError.unsupported("the filter \(name)")
        }
    }

    // MARK: Tests

    static func test(_ name: String, _ v: JinjaValue, _ args: [JinjaValue]) throws -> Bool {
        switch name {
        case "defined": return v.isDefined
        case "undefined": return !v.isDefined
        case "none": if case .none = v { return true } else { return false }
        case "string": return v.isString
        case "number": if case .int = v { return true }; if case .double = v { return true }; return false
        case "integer": if case .int = v { return true } else { return false }
        case "float": if case .double = v { return true } else { return false }
        case "boolean": if case .bool = v { return true } else { return false }
        case "true": if case .bool(true) = v { return true } else { return false }
        case "false": if case .bool(false) = v { return true } else { return false }
        case "mapping": if case .object = v { return true } else { return false }
        case "sequence", "iterable":
            switch v {
            case .array, .string, .object: return true
            default: return false
            }
        case "equalto", "eq", "==", "sameas": return v.equals(args.first ?? .none)
        case "ne", "!=": return !v.equals(args.first ?? .none)
        case "gt", ">", "lt", "<", "ge", ">=", "le", "<=":
            guard let c = v.compare(args.first ?? .none) else { throw ChatTemplateError.runtime("test \(name) cannot compare \(v.typeName)") }
            switch name {
            case "gt", ">": return c > 0
            case "lt", "<": return c < 0
            case "ge", ">=": return c >= 0
            default: return c <= 0
            }
        case "in": return try contains(args.first ?? .array([]), v)
        case "odd", "even", "divisibleby":
            guard let i = v.integer else { throw ChatTemplateError.runtime("test \(name) needs an integer") }
            if name == "odd" { return i % 2 != 0 }
            if name == "even" { return i % 2 == 0 }
            guard let d = args.first?.integer, d != 0 else { throw ChatTemplateError.runtime("divisibleby needs a non-zero integer") }
            return i % d == 0
        case "lower": return v.str == v.str.lowercased()
        case "upper": return v.str == v.str.uppercased()
        default: throw ChatTemplateError.unsupported("the test \(name)")
        }
    }
}

extension JinjaValue {
    var isString: Bool { if case .string = self { return true } else { return false } }
}

extension Double {
    /// Clamped to the Int64 range (for integer powers).
    fileprivate var clamped: Double { Swift.min(Swift.max(self, -9.2e18), 9.2e18) }
}

/// transformers' `tojson`: `json.dumps(value, ensure_ascii=False, indent=indent)` (separators
/// `", "` and `": "`, or `","` at line ends with an indent; keys in insertion order).
enum JinjaJSON {
    static func dump(_ v: JinjaValue, indent: Int?) throws -> String {
        var out = ""
        try write(v, indent: indent, level: 0, into: &out)
        return out
    }

    private static func write(_ v: JinjaValue, indent: Int?, level: Int, into out: inout String) throws {
        guard level < 64 else { throw ChatTemplateError.limit("tojson nested deeper than 64") }
        switch v {
        case .undefined(let what): throw ChatTemplateError.runtime("'\(what)' is undefined (in tojson)")
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            out += d.isFinite ? JinjaValue.pythonFloat(d) : (d.isNaN ? "NaN" : d > 0 ? "Infinity" : "-Infinity")
        case .string(let s): quote(s, into: &out)
        case .array(let items):
            try container(items.map { (nil, $0) }, open: "[", close: "]", indent: indent, level: level, into: &out)
        case .object(let o):
            try container(o.keys.map { ($0, o[$0]!) }, open: "{", close: "}", indent: indent, level: level, into: &out)
        case .namespace(let ns):
            try container(ns.object.keys.map { ($0, ns.object[$0]!) }, open: "{", close: "}", indent: indent, level: level, into: &out)
        }
    }

    private static func container(_ items: [(String?, JinjaValue)], open: String, close: String, indent: Int?, level: Int,
                                  into out: inout String) throws {
        out += open
        guard !items.isEmpty else { out += close; return }
        let pad = indent.map { String(repeating: " ", count: max(0, min($0, 64))) }
        for (i, (key, value)) in items.enumerated() {
            if i > 0 { out += pad == nil ? ", " : "," }
            if let pad { out += "\n" + String(repeating: pad, count: level + 1) }
            if let key { quote(key, into: &out); out += ": " }
            try write(value, indent: indent, level: level + 1, into: &out)
        }
        if let pad { out += "\n" + String(repeating: pad, count: level) }
        out += close
    }

    static func quote(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 {
                    out += String(format: "\\u%04x", u.value)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}
