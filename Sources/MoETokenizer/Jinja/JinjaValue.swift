import Foundation

/// A value inside a chat template, with Python's semantics where Jinja borrows them (truthiness,
/// `str()`, equality, ordering). Dictionaries keep their insertion order.
public enum JinjaValue {
    /// A name or key that does not exist (printed as nothing, false, iterates as empty).
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JinjaValue])
    case object(JinjaObject)
    /// `namespace(...)`: the one mutable value, shared by reference.
    case namespace(JinjaNamespace)

    public static func from(_ messages: [ChatMessage]) -> JinjaValue {
        .array(messages.map { .object(JinjaObject([("role", .string($0.role)), ("content", .string($0.content))])) })
    }

    var isDefined: Bool { if case .undefined = self { return false } else { return true } }

    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .array(let a): return !a.isEmpty
        case .object(let o): return !o.keys.isEmpty
        case .namespace: return true
        }
    }

    /// Python's `str()`.
    var str: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr
        }
    }

    /// Python's `repr()`, as Jinja prints lists and dictionaries.
    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return Self.pythonFloat(d)
        case .string(let s):
            let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
            var out = String(quote)
            for c in s {
                switch c {
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case quote: out += "\\" + String(c)
                default: out.append(c)
                }
            }
            return out + String(quote)
        case .array(let a): return "[" + a.map(\.repr).joined(separator: ", ") + "]"
        case .object(let o): return "{" + o.keys.map { "'\($0)': " + o.values[$0]!.repr }.joined(separator: ", ") + "}"
        case .namespace: return "<Namespace>"
        }
    }

    static func pythonFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d > 0 ? "inf" : "-inf" }
        if d == d.rounded() && abs(d) < 1e16 { return String(Int(d)) + ".0" }
        return "\(d)"
    }

    var typeName: String {
        switch self {
        case .undefined: return "undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .array: return "list"
        case .object: return "dict"
        case .namespace: return "Namespace"
        }
    }

    /// The numeric value, for arithmetic and comparisons (bools count as 0 and 1, as in Python).
    var number: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    var integer: Int? {
        switch self {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    /// Python's `==`.
    func equals(_ other: JinjaValue) -> Bool {
        switch (self, other) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let a), .string(let b)): return a.unicodeScalars.elementsEqual(b.unicodeScalars)
        case (.array(let a), .array(let b)): return a.count == b.count && zip(a, b).allSatisfy { $0.equals($1) }
        case (.object(let a), .object(let b)):
            return a.keys.count == b.keys.count && a.keys.allSatisfy { k in b.values[k].map { a.values[k]!.equals($0) } ?? false }
        case (.namespace(let a), .namespace(let b)): return a === b
        default:
            if let x = number, let y = other.number { return x == y }
            return false
        }
    }

    /// Python's ordering for numbers and strings (code point order); nil when they do not compare.
    func compare(_ other: JinjaValue) -> Int? {
        if let x = number, let y = other.number { return x < y ? -1 : x > y ? 1 : 0 }
        if case .string(let a) = self, case .string(let b) = other {
            if a.unicodeScalars.elementsEqual(b.unicodeScalars) { return 0 }
            return a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars) { $0.value < $1.value } ? -1 : 1
        }
        return nil
    }
}

/// A dictionary that keeps insertion order, as Python's does.
public struct JinjaObject {
    var keys: [String] = []
    var values: [String: JinjaValue] = [:]

    public init(_ pairs: [(String, JinjaValue)] = []) {
        for (k, v) in pairs { self[k] = v }
    }

    public subscript(key: String) -> JinjaValue? {
        get { values[key] }
        set {
            if values[key] == nil, newValue != nil { keys.append(key) }
            if newValue == nil { keys.removeAll { $0 == key } }
            values[key] = newValue
        }
    }
}

/// The object `namespace()` makes: attributes that `{% set ns.x = ... %}` changes from inside loops.
public final class JinjaNamespace {
    var object: JinjaObject
    init(_ object: JinjaObject) { self.object = object }
}
