import Foundation

/// A JSON document as a plain tree. Requests are read into this first so every field can be
/// checked by hand with a message naming the parameter; responses are built as trees so that
/// `null` fields OpenAI clients expect are written explicitly.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public subscript(key: String) -> JSONValue? {
        if case .object(let fields) = self { return fields[key] }
        return nil
    }

    /// A short name of the JSON type, for error messages.
    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .int, .double: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}

extension JSONValue: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int.self) {
            self = .int(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

extension JSONValue {
    /// Parses a request body; anything that is not one JSON value in UTF-8 is an error, with a
    /// short reason (never a dump of the decoder's internals or of the body).
    static func parse(_ data: Data) throws -> JSONValue {
        guard String(data: data, encoding: .utf8) != nil else {
            throw APIError.invalidRequest("the request body is not valid UTF-8", code: "invalid_json")
        }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw APIError.invalidRequest("the request body is not valid JSON\(Self.reason(error))", code: "invalid_json")
        }
    }

    /// The decoder's own one-line explanation, when it has one, clipped.
    private static func reason(_ error: any Error) -> String {
        guard case DecodingError.dataCorrupted(let context) = error else { return "" }
        let text = context.debugDescription.split(separator: "\n").first.map(String.init) ?? ""
        guard !text.isEmpty, !text.contains("Error Domain") else { return "" }
        return " (\(text.count <= 120 ? text : String(text.prefix(120)) + "…"))"
    }

    func encoded() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        // Encoding a tree of plain values cannot fail; an empty object keeps the reply well formed.
        return (try? encoder.encode(self)) ?? Data("{}".utf8)
    }

    var encodedString: String { String(decoding: encoded(), as: UTF8.self) }
}
