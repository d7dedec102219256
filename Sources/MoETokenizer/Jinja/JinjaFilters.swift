import Foundation

/// The filters (`| name`) and tests (`is name`) chat templates use, with jinja2's results.
extension JinjaBuiltins {
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
