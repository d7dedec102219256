import ArgumentParser
import Foundation

/// Reads a UTF-8 text file, with a clear error when it is missing or not text.
func readTextFile(_ path: String) throws -> String {
    guard let text = String(data: try readFileBytes(path), encoding: .utf8) else { throw InputError("\(path) is not UTF-8 text") }
    return text
}

/// Reads a whole file, with a clear error when it is missing or unreadable.
func readFileBytes(_ path: String) throws -> Data {
    guard FileManager.default.fileExists(atPath: path) else { throw InputError("\(path) does not exist") }
    do { return try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
        throw InputError("cannot read \(path): \(error.localizedDescription)")
    }
}

enum TextLines {
    /// Lines of a file: split on "\n" only (a "\r" stays in its line, as a reference script reading
    /// with `split("\n")` sees it); a final newline does not start another line.
    static func split(_ text: String) -> [String] {
        guard !text.isEmpty else { return [] }
        // Bytes, not Characters: Swift treats "\r\n" as one Character that "\n" would not match.
        var lines = text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
        if text.utf8.last == UInt8(ascii: "\n") { lines.removeLast() }
        return lines
    }
}

func printStderr(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// A problem with an input file or its contents: printed as one line, without the usage text.
struct InputError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
