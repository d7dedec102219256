import Foundation

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
