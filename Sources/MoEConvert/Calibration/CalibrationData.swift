import Foundation

/// One message of a chat sample.
public struct ChatTurn: Sendable, Equatable {
    public var role: String
    public var content: String
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// One unit of sample text: plain text, or a conversation to render through the chat template.
public enum CalibrationDocument: Sendable, Equatable {
    case text(String)
    case chat([ChatTurn])
}

/// Reads calibration samples: a plain text file (one document), or JSON Lines where every
/// line is `{"text": "..."}` or `{"messages": [{"role": "...", "content": "..."}, ...]}`.
public enum CalibrationData {
    public static func load(_ url: URL) throws -> [CalibrationDocument] {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw CalibrationError("cannot read calibration file \(url.path)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw CalibrationError("calibration file \(url.lastPathComponent) is not UTF-8 text")
        }
        return try parse(text, name: url.lastPathComponent)
    }

    public static func parse(_ text: String, name: String) throws -> [CalibrationDocument] {
        guard !text.allSatisfy(\.isWhitespace) else {
            throw CalibrationError("calibration file \(name) is empty")
        }
        let lowered = name.lowercased()
        let firstLine = text.split(whereSeparator: \.isNewline).first { !$0.allSatisfy(\.isWhitespace) } ?? ""
        let looksLikeJSONL = lowered.hasSuffix(".jsonl") || lowered.hasSuffix(".ndjson")
            || (firstLine.first == "{" && jsonObject(String(firstLine)) != nil)
        guard looksLikeJSONL else { return [.text(text)] }
        var documents: [CalibrationDocument] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            guard !line.allSatisfy(\.isWhitespace) else { continue }
            documents.append(try document(String(line), at: "\(name) line \(index + 1)"))
        }
        let hasContent = documents.contains {
            switch $0 {
            case .text(let s): !s.isEmpty
            case .chat(let turns): turns.contains { !$0.content.isEmpty }
            }
        }
        guard hasContent else { throw CalibrationError("calibration file \(name) has no text") }
        return documents
    }

    private static func document(_ line: String, at place: String) throws -> CalibrationDocument {
        guard let object = jsonObject(line) else { throw CalibrationError("\(place) is not a JSON object") }
        if let text = object["text"] {
            guard let text = text as? String else { throw CalibrationError("\(place): \"text\" is not a string") }
            return .text(text)
        }
        if let messages = object["messages"] {
            guard let list = messages as? [Any], !list.isEmpty else {
                throw CalibrationError("\(place): \"messages\" is not a non-empty list")
            }
            return .chat(try list.enumerated().map { i, item in
                guard let m = item as? [String: Any], let role = m["role"] as? String, let content = m["content"] as? String else {
                    throw CalibrationError("\(place): message \(i + 1) needs string \"role\" and \"content\"")
                }
                return ChatTurn(role: role, content: content)
            })
        }
        throw CalibrationError("\(place) has neither \"text\" nor \"messages\"")
    }

    private static func jsonObject(_ line: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }
}
