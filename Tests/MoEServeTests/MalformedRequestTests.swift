import Foundation
@testable import MoEServe
import XCTest

/// Bad requests get OpenAI-style errors with the right status, and the server keeps serving.
final class MalformedRequestTests: XCTestCase {
    struct Case {
        var name: String
        var method = "POST"
        var path = "/v1/completions"
        var body: Data?
        var headers: [String: String] = [:]
        var status: Int
        var code: String?
        var param: String?
    }

    static func json(_ text: String) -> Data { Data(text.utf8) }

    static let cases: [Case] = [
        Case(name: "broken JSON", body: json(#"{"model": "fixture", "prompt": "#), status: 400),
        Case(name: "trailing garbage", body: json(#"{"model": "fixture", "prompt": "a"} x"#), status: 400),
        Case(name: "empty body", body: Data(), status: 400),
        Case(name: "body is an array", body: json("[1, 2]"), status: 400),
        Case(name: "invalid UTF-8", body: Data([0x7B, 0x22, 0x6D, 0x22, 0x3A, 0x22, 0xFF, 0xFE, 0x22, 0x7D]), status: 400),
        Case(name: "missing model", body: json(#"{"prompt": "hi"}"#), status: 400, code: "missing_required_parameter", param: "model"),
        Case(name: "unknown model", body: json(#"{"model": "gpt-4", "prompt": "hi"}"#), status: 404, code: "model_not_found", param: "model"),
        Case(name: "model is a number", body: json(#"{"model": 7, "prompt": "hi"}"#), status: 400, code: "invalid_type", param: "model"),
        Case(name: "missing prompt", body: json(#"{"model": "fixture"}"#), status: 400, code: "missing_required_parameter", param: "prompt"),
        Case(name: "prompt is an object", body: json(#"{"model": "fixture", "prompt": {"a": 1}}"#), status: 400, code: "invalid_type", param: "prompt"),
        Case(name: "more prompts times n than 64", body: json(#"{"model": "fixture", "prompt": ["a", "b", "c"], "n": 22}"#), status: 400, code: "invalid_value", param: "prompt"),
        Case(name: "prompt mixes strings and ids", body: json(#"{"model": "fixture", "prompt": ["a", 1]}"#), status: 400, code: "invalid_type", param: "prompt"),
        Case(name: "an empty token list among prompts", body: json(#"{"model": "fixture", "prompt": [[1, 2], []]}"#), status: 400, code: "invalid_value", param: "prompt"),
        Case(name: "token id outside the vocabulary", body: json(#"{"model": "fixture", "prompt": [1, 5000]}"#), status: 400, code: "invalid_value", param: "prompt"),
        Case(name: "empty token list", body: json(#"{"model": "fixture", "prompt": []}"#), status: 400, param: "prompt"),
        Case(name: "prompt the tokenizer cannot encode", body: json(#"{"model": "fixture", "prompt": "caf\u00e9"}"#), status: 400, param: "prompt"),
        Case(name: "negative max_tokens", body: json(#"{"model": "fixture", "prompt": "a", "max_tokens": -3}"#), status: 400, code: "invalid_value", param: "max_tokens"),
        Case(name: "zero max_tokens", body: json(#"{"model": "fixture", "prompt": "a", "max_tokens": 0}"#), status: 400, code: "invalid_value", param: "max_tokens"),
        Case(name: "max_tokens is a string", body: json(#"{"model": "fixture", "prompt": "a", "max_tokens": "10"}"#), status: 400, code: "invalid_type", param: "max_tokens"),
        Case(name: "fractional max_tokens", body: json(#"{"model": "fixture", "prompt": "a", "max_tokens": 1.5}"#), status: 400, code: "invalid_type", param: "max_tokens"),
        Case(name: "temperature above 2", body: json(#"{"model": "fixture", "prompt": "a", "temperature": 3}"#), status: 400, code: "invalid_value", param: "temperature"),
        Case(name: "temperature is a string", body: json(#"{"model": "fixture", "prompt": "a", "temperature": "hot"}"#), status: 400, code: "invalid_type", param: "temperature"),
        Case(name: "top_p zero", body: json(#"{"model": "fixture", "prompt": "a", "top_p": 0}"#), status: 400, code: "invalid_value", param: "top_p"),
        Case(name: "negative top_k", body: json(#"{"model": "fixture", "prompt": "a", "top_k": -5}"#), status: 400, code: "invalid_value", param: "top_k"),
        Case(name: "seed is a string", body: json(#"{"model": "fixture", "prompt": "a", "seed": "x"}"#), status: 400, code: "invalid_type", param: "seed"),
        Case(name: "presence_penalty above 2", body: json(#"{"model": "fixture", "prompt": "a", "presence_penalty": 2.5}"#), status: 400, code: "invalid_value", param: "presence_penalty"),
        Case(name: "frequency_penalty below -2", body: json(#"{"model": "fixture", "prompt": "a", "frequency_penalty": -3}"#), status: 400, code: "invalid_value", param: "frequency_penalty"),
        Case(name: "frequency_penalty is a string", body: json(#"{"model": "fixture", "prompt": "a", "frequency_penalty": "high"}"#), status: 400, code: "invalid_type", param: "frequency_penalty"),
        Case(name: "zero repetition_penalty", path: "/v1/chat/completions", body: json(#"{"model": "fixture", "messages": [{"role": "user", "content": "hi"}], "repetition_penalty": 0}"#), status: 400, code: "invalid_value", param: "repetition_penalty"),
        Case(name: "n above 64", body: json(#"{"model": "fixture", "prompt": "a", "n": 65}"#), status: 400, code: "invalid_value", param: "n"),
        Case(name: "n zero", path: "/v1/chat/completions", body: json(#"{"model": "fixture", "messages": [{"role": "user", "content": "hi"}], "n": 0}"#), status: 400, code: "invalid_value", param: "n"),
        Case(name: "n is a string", body: json(#"{"model": "fixture", "prompt": "a", "n": "2"}"#), status: 400, code: "invalid_type", param: "n"),
        Case(name: "echo is a string", body: json(#"{"model": "fixture", "prompt": "a", "echo": "yes"}"#), status: 400, code: "invalid_type", param: "echo"),
        Case(name: "negative max_tokens with echo", body: json(#"{"model": "fixture", "prompt": "a", "echo": true, "max_tokens": -1}"#), status: 400, code: "invalid_value", param: "max_tokens"),
        Case(name: "logprobs above 5", body: json(#"{"model": "fixture", "prompt": "a", "logprobs": 6}"#), status: 400, code: "invalid_value", param: "logprobs"),
        Case(name: "logprobs is a boolean on completions", body: json(#"{"model": "fixture", "prompt": "a", "logprobs": true}"#), status: 400, code: "invalid_type", param: "logprobs"),
        Case(name: "chat top_logprobs without logprobs", path: "/v1/chat/completions", body: json(#"{"model": "fixture", "messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}"#), status: 400, code: "invalid_value", param: "top_logprobs"),
        Case(name: "chat top_logprobs above 20", path: "/v1/chat/completions", body: json(#"{"model": "fixture", "messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 21}"#), status: 400, code: "invalid_value", param: "top_logprobs"),
        Case(name: "chat logprobs is a number", path: "/v1/chat/completions", body: json(#"{"model": "fixture", "messages": [{"role": "user", "content": "hi"}], "logprobs": 3}"#), status: 400, code: "invalid_type", param: "logprobs"),
        Case(name: "stream is a string", body: json(#"{"model": "fixture", "prompt": "a", "stream": "yes"}"#), status: 400, code: "invalid_type", param: "stream"),
        Case(name: "stream_options without stream", body: json(#"{"model": "fixture", "prompt": "a", "stream_options": {"include_usage": true}}"#), status: 400, param: "stream_options"),
        Case(name: "five stop strings", body: json(#"{"model": "fixture", "prompt": "a", "stop": ["a", "b", "c", "d", "e"]}"#), status: 400, code: "invalid_value", param: "stop"),
        Case(name: "stop is a number", body: json(#"{"model": "fixture", "prompt": "a", "stop": 3}"#), status: 400, code: "invalid_type", param: "stop"),
        Case(name: "prompt longer than the context", body: json(#"{"model": "fixture", "prompt": "\#(String(repeating: "x", count: 300))"}"#), status: 400, code: "context_length_exceeded", param: "prompt"),
        Case(name: "max_tokens beyond the context", body: json(#"{"model": "fixture", "prompt": "abc", "max_tokens": 255}"#), status: 400, code: "context_length_exceeded", param: "prompt"),
        // Integer fields as large as JSON allows must not overflow the context arithmetic.
        Case(name: "max_tokens of Int.max", body: json(#"{"model": "fixture", "prompt": "abc", "max_tokens": 9223372036854775807}"#), status: 400, code: "context_length_exceeded", param: "prompt"),
        Case(name: "chat max_completion_tokens of Int.max", path: "/v1/chat/completions", body: json(#"{"model": "fixture", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 9223372036854775807}"#), status: 400, code: "context_length_exceeded", param: "messages"),
        Case(name: "max_tokens beyond Int64", body: json(#"{"model": "fixture", "prompt": "abc", "max_tokens": 92233720368547758070}"#), status: 400, code: "invalid_type", param: "max_tokens"),
        Case(name: "seed of Int.min", body: json(#"{"model": "fixture", "prompt": "abc", "max_tokens": 1, "seed": -9223372036854775808, "temperature": 1}"#), status: 200),
        Case(name: "number outside the double range", body: json(#"{"model": "fixture", "prompt": "a", "temperature": 1e999}"#), status: 400, code: "invalid_json"),
        Case(name: "a model name of 100 kB", body: json(#"{"model": "\#(String(repeating: "m", count: 60_000))", "prompt": "hi"}"#), status: 404, code: "model_not_found", param: "model"),
        Case(name: "body over the size limit", body: json(#"{"model": "fixture", "prompt": "\#(String(repeating: "y", count: 70_000))"}"#), status: 413, code: "request_too_large"),
        Case(name: "chat without messages", path: "/v1/chat/completions", body: json(#"{"model": "fixture"}"#), status: 400, code: "missing_required_parameter", param: "messages"),
        Case(name: "chat with no messages", path: "/v1/chat/completions", body: json(#"{"model": "fixture", "messages": []}"#), status: 400, code: "invalid_value", param: "messages"),
        Case(name: "chat messages is a string", path: "/v1/chat/completions", body: json(#"{"model": "fixture", "messages": "hi"}"#), status: 400, code: "invalid_type", param: "messages"),
        Case(name: "chat role unknown", path: "/v1/chat/completions", body: json(#"{"model": "fixture", "messages": [{"role": "wizard", "content": "hi"}]}"#), status: 400, code: "invalid_value", param: "messages[0].role"),
        Case(name: "chat content is a number", path: "/v1/chat/completions", body: json(#"{"model": "fixture", "messages": [{"role": "user", "content": 5}]}"#), status: 400, code: "invalid_type", param: "messages[0].content"),
        Case(name: "chat image part", path: "/v1/chat/completions", body: json(#"{"model": "fixture", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}"#), status: 400, code: "unsupported_parameter"),
        Case(name: "chat tools", path: "/v1/chat/completions", body: json(#"{"model": "fixture", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}"#), status: 400, code: "unsupported_parameter", param: "tools"),
        Case(name: "chat_template_kwargs is a list", path: "/v1/chat/completions", body: json(#"{"model": "fixture", "messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": [1]}"#), status: 400, code: "invalid_type", param: "chat_template_kwargs"),
        Case(name: "chat_template_kwargs holds an object", path: "/v1/chat/completions", body: json(#"{"model": "fixture", "messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"enable_thinking": {"a": 1}}}"#), status: 400, code: "invalid_value", param: "chat_template_kwargs"),
        Case(name: "chat_template_kwargs sets messages", path: "/v1/chat/completions", body: json(#"{"model": "fixture", "messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"messages": true}}"#), status: 400, code: "invalid_value", param: "chat_template_kwargs"),
        Case(name: "chat_template_kwargs accepted", path: "/v1/chat/completions", body: json(#"{"model": "fixture", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "chat_template_kwargs": {"enable_thinking": false}}"#), status: 200),
        Case(name: "chat unknown model", path: "/v1/chat/completions", body: json(#"{"model": "other", "messages": [{"role": "user", "content": "hi"}]}"#), status: 404, code: "model_not_found"),
        Case(name: "unknown endpoint", path: "/v1/embeddings", body: json("{}"), status: 404, code: "not_found"),
        Case(name: "GET on a POST endpoint", method: "GET", path: "/v1/completions", status: 405, code: "method_not_allowed"),
        Case(name: "unknown model id", method: "GET", path: "/v1/models/nothing", status: 404, code: "model_not_found"),
    ]

    func testMalformedRequestsGetErrorsAndTheServerKeepsServing() async throws {
        let server = try await TestServer.start(try TestModels.fixture(),
                                                options: ServerOptions(maxContext: 256, maxBodyBytes: 65_536))
        let port = server.port
        for testCase in Self.cases {
            let result = try await offThread {
                try httpRequest(port: port, method: testCase.method, path: testCase.path, body: testCase.body,
                                headers: testCase.headers)
            }
            XCTAssertEqual(result.status, testCase.status, "\(testCase.name): \(result.text)")
            if testCase.status == 200 { continue }
            let error = result.json["error"] as? [String: Any]
            // Short, plain messages: no decoder dumps, no echo of a huge value.
            let message = error?["message"] as? String ?? ""
            XCTAssertLessThan(message.count, 400, "\(testCase.name): \(message.prefix(500))")
            XCTAssertFalse(message.contains("Error Domain") || message.contains("UserInfo") || message.contains("DecodingError"),
                           "\(testCase.name): \(message)")
            XCTAssertNotNil(error?["message"] as? String, "\(testCase.name): no error message in \(result.text)")
            XCTAssertNotNil(error?["type"] as? String, "\(testCase.name)")
            XCTAssertTrue(error?.keys.contains("param") ?? false, "\(testCase.name): 'param' missing")
            XCTAssertTrue(error?.keys.contains("code") ?? false, "\(testCase.name): 'code' missing")
            if let code = testCase.code { XCTAssertEqual(result.errorCode, code, "\(testCase.name): \(result.text)") }
            if let param = testCase.param { XCTAssertEqual(result.errorParam, param, "\(testCase.name): \(result.text)") }
        }
        // Still serving after all of that.
        let health = try await offThread { try httpRequest(port: port, method: "GET", path: "/health") }
        XCTAssertEqual(health.status, 200)
        let ok = try await offThread {
            try httpPost(port: port, "/v1/completions", json: ["model": "fixture", "prompt": "hello", "max_tokens": 3,
                                                                "ignore_eos": true])
        }
        XCTAssertEqual(ok.status, 200, ok.text)
        XCTAssertEqual((ok.json["usage"] as? [String: Any])?["completion_tokens"] as? Int, 3)
        // Every refusal was counted by status.
        let metrics = try await offThread { try httpRequest(port: port, method: "GET", path: "/metrics") }
        let bad = Self.cases.filter { $0.status == 400 && $0.path == "/v1/completions" }.count
        XCTAssertTrue(metrics.text.contains("moepack_requests_total{endpoint=\"/v1/completions\",status=\"400\"} \(bad)"),
                      metrics.text)
        XCTAssertTrue(metrics.text.contains("moepack_requests_total{endpoint=\"/v1/completions\",status=\"413\"} 1"))
        XCTAssertTrue(metrics.text.contains("moepack_requests_total{endpoint=\"other\",status=\"404\"} 1"))
        await server.stop()
    }

    func testCaseCount() {
        XCTAssertGreaterThanOrEqual(Self.cases.count, 20)
    }
}
