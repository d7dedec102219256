import Foundation
@testable import MoEServe
import XCTest

/// `--api-key`: every request but /health and /metrics needs `Authorization: Bearer <key>`.
final class APIKeyTests: XCTestCase {
    func testRequestsWithoutTheKeyAreRefused() async throws {
        let server = try await TestServer.start(try TestModels.fixture(), options: ServerOptions(apiKey: "s3cret key"))
        let port = server.port
        for headers in [[:], ["Authorization": "Bearer wrong"], ["Authorization": "s3cret key"],
                        ["Authorization": "Bearer s3cret ke"], ["Authorization": "Bearer s3cret keyy"]] {
            let result = try await offThread { try httpRequest(port: port, method: "GET", path: "/v1/models", headers: headers) }
            XCTAssertEqual(result.status, 401, "\(headers)")
            XCTAssertEqual(result.errorCode, "invalid_api_key", "\(headers)")
        }
        let refused = try await offThread {
            try httpRequest(port: port, method: "POST", path: "/v1/completions",
                            body: Data(#"{"model": "fixture", "prompt": "a", "max_tokens": 2}"#.utf8))
        }
        XCTAssertEqual(refused.status, 401)

        let key = ["Authorization": "Bearer s3cret key"]
        let models = try await offThread { try httpRequest(port: port, method: "GET", path: "/v1/models", headers: key) }
        XCTAssertEqual(models.status, 200, models.text)
        let completion = try await offThread {
            try httpRequest(port: port, method: "POST", path: "/v1/completions",
                            body: Data(#"{"model": "fixture", "prompt": "a", "max_tokens": 2}"#.utf8), headers: key)
        }
        XCTAssertEqual(completion.status, 200, completion.text)
        for path in ["/health", "/metrics"] {
            let open = try await offThread { try httpRequest(port: port, method: "GET", path: path) }
            XCTAssertEqual(open.status, 200, path)
        }
        let metrics = try await offThread { try httpRequest(port: port, method: "GET", path: "/metrics") }
        XCTAssertTrue(metrics.text.contains(#"moepack_requests_total{endpoint="/v1/models",status="401"} 5"#), metrics.text)
        await server.stop()
    }

    func testWithoutAKeyEverythingIsOpen() async throws {
        let server = try await TestServer.start(try TestModels.fixture())
        let port = server.port
        let models = try await offThread { try httpRequest(port: port, method: "GET", path: "/v1/models") }
        XCTAssertEqual(models.status, 200)
        await server.stop()
    }

    func testKeyComparison() {
        func same(_ a: String, _ b: String) -> Bool { constantTimeEqual(Array(a.utf8), Array(b.utf8)) }
        XCTAssertTrue(same("Bearer k", "Bearer k"))
        XCTAssertFalse(same("Bearer k", "Bearer j"))
        XCTAssertFalse(same("Bearer k", "Bearer kk"))
        XCTAssertFalse(same("", "Bearer k"))
        XCTAssertFalse(same("Bearer k\u{0}", "Bearer k"))
    }
}
