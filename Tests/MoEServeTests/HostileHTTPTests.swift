import Foundation
@testable import MoEServe
import XCTest

/// Requests the HTTP layer itself must refuse: broken framing gets a 4xx with OpenAI's JSON error
/// body (never a 500 or an empty body), slow clients are cut off, and the server keeps serving.
final class HostileHTTPTests: XCTestCase {
    static let completion = Data(#"{"model": "fixture", "prompt": "hello", "max_tokens": 2}"#.utf8)

    /// Sends raw bytes (optionally half-closing), then reads one response.
    private func exchange(_ port: Int, _ bytes: String, body: Data = Data(), halfClose: Bool = false) async throws -> HTTPResult {
        try await offThread {
            let connection = try RawConnection(port: port, timeoutSeconds: 20)
            var data = Data(bytes.utf8)
            data.append(body)
            try connection.send(data)
            if halfClose { connection.shutdownWrite() }
            let head = try connection.readHead()
            return HTTPResult(status: head.status, headers: head.headers, body: try connection.readBody(head))
        }
    }

    private func assertJSONError(_ result: HTTPResult, status: Int, _ name: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(result.status, status, "\(name): \(result.text)", file: file, line: line)
        let error = result.json["error"] as? [String: Any]
        XCTAssertNotNil(error?["message"] as? String, "\(name): not an OpenAI error body: '\(result.text)'", file: file, line: line)
        XCTAssertEqual(result.headers["content-type"], "application/json", "\(name)", file: file, line: line)
    }

    func testBrokenFramingGetsJSON400() async throws {
        let server = try await TestServer.start(try TestModels.fixture(), options: ServerOptions(maxContext: 256))
        let port = server.port
        let head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        let body = Self.completion

        // A body shorter than its Content-Length, the client then closing its side.
        let short = try await exchange(port, head + "Content-Length: \(body.count + 40)\r\n\r\n", body: body, halfClose: true)
        assertJSONError(short, status: 400, "body shorter than Content-Length")

        // A bad chunk size inside a chunked body.
        let chunked = try await exchange(port, head + "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"mod\r\nzz\r\n", halfClose: true)
        assertJSONError(chunked, status: 400, "bad chunk size")

        // Parser rejections of the head itself.
        let heads = [
            ("two different Content-Lengths", head + "Content-Length: \(body.count)\r\nContent-Length: 3\r\n\r\n"),
            ("a negative Content-Length", head + "Content-Length: -5\r\n\r\n"),
            ("Content-Length and Transfer-Encoding", head + "Content-Length: \(body.count)\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ("a header without a colon", head + "Content-Length \(body.count)\r\n\r\n"),
            ("garbage instead of a request line", "\u{01}\u{02} nonsense\r\n\r\n"),
        ]
        for (name, bytes) in heads {
            let result = try await exchange(port, bytes, body: body)
            assertJSONError(result, status: 400, name)
            XCTAssertEqual(result.errorCode, "malformed_request", name)
        }

        // Still serving, and the refusals were counted.
        let ok = try await offThread { try httpRequest(port: port, method: "POST", path: "/v1/completions", body: body) }
        XCTAssertEqual(ok.status, 200, ok.text)
        let metrics = try await offThread { try httpRequest(port: port, method: "GET", path: "/metrics") }
        XCTAssertTrue(metrics.text.contains("moepack_requests_total{endpoint=\"other\",status=\"400\"} \(heads.count)"), metrics.text)
        XCTAssertFalse(metrics.text.contains("status=\"500\""), metrics.text)
        await server.stop()
    }

    func testSlowClientsAreCutOff() async throws {
        // A request head that never completes (slow loris): the connection is closed.
        let server = try await TestServer.start(try TestModels.fixture(),
                                                options: ServerOptions(maxContext: 256, headerTimeoutSeconds: 1, bodyTimeoutSeconds: 30))
        let port = server.port
        let loris = try await offThread { () -> (Bool, Double) in
            let connection = try RawConnection(port: port, timeoutSeconds: 10)
            try connection.send(Data("POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8))
            let start = Date()
            return (try connection.isClosedByPeer(), Date().timeIntervalSince(start))
        }
        XCTAssertTrue(loris.0, "the server kept a half-sent request head open")
        XCTAssertLessThan(loris.1, 5)

        await server.stop()

        // A body that has not arrived within the body timeout: 408 with a JSON body. (A body that
        // stalls for the header timeout is closed like an idle connection, so that is set longer.)
        let slowBodies = try await TestServer.start(try TestModels.fixture(),
                                                    options: ServerOptions(maxContext: 256, headerTimeoutSeconds: 5, bodyTimeoutSeconds: 1))
        let bodyPort = slowBodies.port
        let head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
        let stalled = try await exchange(bodyPort, head, body: Self.completion)
        assertJSONError(stalled, status: 408, "stalled body")
        XCTAssertEqual(stalled.errorCode, "request_timeout")

        let ok = try await offThread { try httpRequest(port: bodyPort, method: "POST", path: "/v1/completions", body: Self.completion) }
        XCTAssertEqual(ok.status, 200, ok.text)
        await slowBodies.stop()
    }
}
