import Foundation
#if canImport(Glibc)
import Glibc
private let systemSend = Glibc.send
private let sendFlags = Int32(MSG_NOSIGNAL)
#elseif canImport(Darwin)
import Darwin
private let systemSend = Darwin.send
private let sendFlags: Int32 = 0
#endif

/// A minimal blocking HTTP/1.1 client over a loopback socket. Tests use it to send arbitrary
/// bytes (broken JSON, invalid UTF-8), read server-sent events as they arrive, and hang up mid-stream.
final class RawConnection {
    private let fd: Int32
    private var buffer = Data()

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    init(port: Int, timeoutSeconds: Int = 60) throws {
        #if canImport(Glibc)
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw Failure(description: "socket() failed") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            close(fd)
            throw Failure(description: "connect to port \(port) failed")
        }
    }

    deinit { close(fd) }

    func send(_ data: Data) throws {
        var offset = 0
        while offset < data.count {
            let sent = data[offset...].withUnsafeBytes { systemSend(fd, $0.baseAddress, $0.count, sendFlags) }
            guard sent > 0 else { throw Failure(description: "send failed") }
            offset += sent
        }
    }

    /// Closes the sending side: the server sees the end of the stream (a body cut short).
    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// True when the server has closed the connection (reads end of stream), false when bytes arrive.
    func isClosedByPeer() throws -> Bool { try !fill() }

    func sendRequest(method: String, path: String, body: Data? = nil, headers: [String: String] = [:]) throws {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        var allHeaders = headers
        if let body {
            allHeaders["Content-Type"] = allHeaders["Content-Type"] ?? "application/json"
            allHeaders["Content-Length"] = allHeaders["Content-Length"] ?? "\(body.count)"
        }
        for (name, value) in allHeaders.sorted(by: { $0.key < $1.key }) { head += "\(name): \(value)\r\n" }
        head += "\r\n"
        var data = Data(head.utf8)
        if let body { data.append(body) }
        try send(data)
    }

    /// Reads more bytes into the buffer; false at end of stream.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = recv(fd, &chunk, chunk.count, 0)
        if count < 0 { throw Failure(description: "recv failed or timed out (errno \(errno))") }
        if count == 0 { return false }
        buffer.append(contentsOf: chunk[0..<count])
        return true
    }

    private func readLine() throws -> String {
        while true {
            if let range = buffer.range(of: Data("\r\n".utf8)) {
                let line = String(decoding: buffer[buffer.startIndex..<range.lowerBound], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex..<range.upperBound)
                return line
            }
            guard try fill() else { throw Failure(description: "connection closed mid-line") }
        }
    }

    private func readExactly(_ count: Int) throws -> Data {
        while buffer.count < count {
            guard try fill() else { throw Failure(description: "connection closed mid-body") }
        }
        let data = buffer.prefix(count)
        buffer.removeFirst(count)
        return Data(data)
    }

    struct Head {
        var status: Int
        var headers: [String: String]
        var chunked: Bool { headers["transfer-encoding"]?.lowercased() == "chunked" }
    }

    func readHead() throws -> Head {
        let statusLine = try readLine()
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw Failure(description: "bad status line \(statusLine)") }
        var headers: [String: String] = [:]
        while true {
            let line = try readLine()
            if line.isEmpty { break }
            if let colon = line.firstIndex(of: ":") {
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return Head(status: status, headers: headers)
    }

    /// The next piece of a chunked body; nil after the last chunk.
    func readChunk() throws -> Data? {
        let sizeLine = try readLine()
        guard let size = Int(sizeLine.split(separator: ";")[0], radix: 16) else {
            throw Failure(description: "bad chunk size \(sizeLine)")
        }
        if size == 0 {
            _ = try? readLine()
            return nil
        }
        let data = try readExactly(size)
        _ = try readLine()
        return data
    }

    func readBody(_ head: Head) throws -> Data {
        if head.chunked {
            var body = Data()
            while let chunk = try readChunk() { body.append(chunk) }
            return body
        }
        if let length = head.headers["content-length"].flatMap({ Int($0) }) { return try readExactly(length) }
        while try fill() {}
        defer { buffer.removeAll() }
        return buffer
    }
}

struct HTTPResult {
    var status: Int
    var headers: [String: String]
    var body: Data

    var json: [String: Any] { ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any]) ?? [:] }
    var text: String { String(decoding: body, as: UTF8.self) }
    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    var errorParam: String? { (json["error"] as? [String: Any])?["param"] as? String }

    /// The JSON payloads of a server-sent-event body, and whether it ended with [DONE].
    var events: (payloads: [[String: Any]], done: Bool) {
        var payloads: [[String: Any]] = []
        var done = false
        for block in text.components(separatedBy: "\n\n") where !block.isEmpty {
            guard block.hasPrefix("data: ") else { continue }
            let payload = String(block.dropFirst(6))
            if payload == "[DONE]" {
                done = true
            } else if let object = (try? JSONSerialization.jsonObject(with: Data(payload.utf8))) as? [String: Any] {
                payloads.append(object)
            }
        }
        return (payloads, done)
    }
}

func httpRequest(port: Int, method: String, path: String, body: Data? = nil,
                 headers: [String: String] = [:]) throws -> HTTPResult {
    let connection = try RawConnection(port: port)
    try connection.sendRequest(method: method, path: path, body: body, headers: headers)
    let head = try connection.readHead()
    return HTTPResult(status: head.status, headers: head.headers, body: try connection.readBody(head))
}

func httpPost(port: Int, _ path: String, json: Any) throws -> HTTPResult {
    try httpRequest(port: port, method: "POST", path: path, body: try JSONSerialization.data(withJSONObject: json))
}

/// Runs blocking work on its own thread so the test does not hold a Swift concurrency thread.
func offThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
    }
}
