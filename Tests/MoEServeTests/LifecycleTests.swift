import Foundation
@testable import MoEServe
import MoERuntime
import XCTest

/// Disconnects, a full queue, and draining.
final class LifecycleTests: XCTestCase {
    /// A client that hangs up mid-stream cancels its sequence; the batch slot and cache are freed
    /// long before the requested length could have been generated.
    func testDisconnectMidStreamCancelsTheSequence() async throws {
        // 5 ms per step: 2000 tokens would take at least 10 s, so finishing quickly means cancelled.
        let server = try await TestServer.start(try TestModels.fixture(), stepPause: .milliseconds(5))
        let port = server.port
        let body = try JSONSerialization.data(withJSONObject: [
            "model": "fixture", "prompt": "never ending", "max_tokens": 2000, "stream": true, "ignore_eos": true,
        ])
        let firstChunk = try await offThread { () -> String in
            let connection = try RawConnection(port: port)
            try connection.sendRequest(method: "POST", path: "/v1/completions", body: body)
            let head = try connection.readHead()
            guard head.status == 200, head.chunked else { return "status \(head.status)" }
            var seen = ""
            while !seen.contains("\"text\"") {
                guard let chunk = try connection.readChunk() else { break }
                seen += String(decoding: chunk, as: UTF8.self)
            }
            return seen
            // The connection closes here, mid-stream.
        }
        XCTAssertTrue(firstChunk.hasPrefix("data: {"), firstChunk)
        let idle = await server.waitUntilIdle(seconds: 8)
        XCTAssertTrue(idle, "the sequence was still running after the client left")
        XCTAssertEqual(server.server.metrics.cancelledSequences, 1)
        // The server goes on serving.
        let after = try await offThread {
            try httpPost(port: port, "/v1/completions", json: ["model": "fixture", "prompt": "next", "max_tokens": 2])
        }
        XCTAssertEqual(after.status, 200)
        await server.stop()
    }

    /// With one batch slot and one queue place, a third concurrent request is refused with 503.
    func testFullQueueAnswers503() async throws {
        let server = try await TestServer.start(try TestModels.fixture(),
                                                options: ServerOptions(maxBatch: 1, maxQueue: 1),
                                                stepPause: .milliseconds(5))
        let port = server.port
        let long = try JSONSerialization.data(withJSONObject: [
            "model": "fixture", "prompt": "long", "max_tokens": 300, "stream": true, "ignore_eos": true,
        ])
        // Two streams occupy the slot and the queue.
        var holders = try (0..<2).map { _ in try RawConnection(port: port) }
        for holder in holders { try holder.sendRequest(method: "POST", path: "/v1/completions", body: long) }
        let deadline = Date().addingTimeInterval(10)
        while server.server.scheduler.load != (1, 1) && Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertTrue(server.server.scheduler.load == (1, 1))
        let refused = try await offThread {
            try httpPost(port: port, "/v1/completions", json: ["model": "fixture", "prompt": "x", "max_tokens": 2])
        }
        XCTAssertEqual(refused.status, 503, refused.text)
        XCTAssertEqual(refused.errorCode, "queue_full")
        XCTAssertEqual((refused.json["error"] as? [String: Any])?["type"] as? String, "server_error")
        holders.removeAll()  // hang up: both sequences are cancelled
        let idle = await server.waitUntilIdle(seconds: 10)
        XCTAssertTrue(idle)
        await server.stop()
    }

    /// While draining (after SIGTERM) new generations are refused and running ones complete.
    func testDrainingRefusesNewWorkAndFinishesRunning() async throws {
        let server = try await TestServer.start(try TestModels.fixture(), stepPause: .milliseconds(2))
        let port = server.port
        async let running = offThread {
            try httpPost(port: port, "/v1/completions", json: ["model": "fixture", "prompt": "in flight", "max_tokens": 100,
                                                                "ignore_eos": true])
        }
        // Wait until it is in the batch, then drain.
        let deadline = Date().addingTimeInterval(10)
        while server.server.scheduler.load.running == 0 && Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
        server.server.scheduler.beginDraining()
        let refused = try await offThread {
            try httpPost(port: port, "/v1/completions", json: ["model": "fixture", "prompt": "late", "max_tokens": 2])
        }
        XCTAssertEqual(refused.status, 503)
        XCTAssertEqual(refused.errorCode, "shutting_down")
        let finished = try await running
        XCTAssertEqual(finished.status, 200)
        XCTAssertEqual((finished.json["usage"] as? [String: Any])?["completion_tokens"] as? Int, 100)
        await server.stop()
    }

    /// Past the grace period in-flight work is cancelled and its client told why.
    func testCancelAllEndsInFlightRequests() async throws {
        let server = try await TestServer.start(try TestModels.fixture(), stepPause: .milliseconds(5))
        let port = server.port
        async let running = offThread {
            try httpPost(port: port, "/v1/completions", json: ["model": "fixture", "prompt": "cut short", "max_tokens": 2000,
                                                                "ignore_eos": true])
        }
        let deadline = Date().addingTimeInterval(10)
        while server.server.scheduler.load.running == 0 && Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
        server.server.scheduler.beginDraining()
        server.server.scheduler.cancelAll(reason: APIError.shuttingDownMessage)
        let result = try await running
        XCTAssertEqual(result.status, 503)
        XCTAssertEqual(result.errorCode, "shutting_down")
        await server.stop()
    }
}
