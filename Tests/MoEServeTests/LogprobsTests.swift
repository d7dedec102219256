import Foundation
@testable import MoEServe
import MoERuntime
import MoETestSupport
import XCTest

/// Log-probabilities of generated tokens: the built-in model's against transformers' (raw logits
/// of `generate()`, Tests/Fixtures/tiny-moe/generate.json), and their OpenAI formats.
final class LogprobsTests: XCTestCase {
    private struct Golden: Decodable {
        struct Case: Decodable {
            let text: String
            let prompt_ids: [Int32]
            let output_ids: [Int32]
            let repetition_penalty: Double?
            let output_logprobs: [Double]
            let top5_ids: [[Int32]]
            let top5_logprobs: [[Double]]
            let prompt_logprobs: [Double]
            let prompt_argmax_ids: [Int32]
        }
        let eos_token_ids: [Int32]
        let cases: [Case]
    }

    private static func golden() throws -> Golden {
        try JSONDecoder().decode(Golden.self, from: Data(contentsOf: Fixtures.root.appendingPathComponent("tiny-moe/generate.json")))
    }

    private static func tinyModel() throws -> ServedModel {
        try ServedModel.load(path: Fixtures.tinyModel.path, name: "tiny")
    }

    /// The six golden generations run together through the scheduler (so they share decode
    /// steps); every token's log-probability and its five most likely alternatives equal
    /// transformers' within 2e-4.
    func testSchedulerLogprobsMatchTransformers() async throws {
        let golden = try Self.golden()
        let served = try Self.tinyModel()
        let scheduler = BatchScheduler(model: served.language, limits: .init(maxBatch: 8))
        scheduler.start()
        let handles = try golden.cases.map { c in
            let options = GenerationOptions(maxTokens: 32, sampling: SamplingOptions(repetitionPenalty: c.repetition_penalty ?? 1))
            return try scheduler.submit(prompt: c.prompt_ids, options: options, cacheCapacity: c.prompt_ids.count + 32, logprobs: 5)
        }
        for (c, handle) in zip(golden.cases, handles) {
            var steps: [TokenLogprobs] = []
            for await event in handle.events {
                if case .token(_, _, let logprobs?) = event { steps.append(logprobs) }
            }
            let label = "\(c.text.suffix(30)) penalty \(c.repetition_penalty ?? 1)"
            XCTAssertEqual(steps.map(\.token), c.output_ids, label)
            for (i, step) in steps.enumerated() where i < c.output_ids.count {
                XCTAssertEqual(Double(step.logprob), c.output_logprobs[i], accuracy: 2e-4, "\(label) token \(i)")
                XCTAssertEqual(step.top.count, 5)
                for (id, expected) in zip(c.top5_ids[i], c.top5_logprobs[i]) {
                    if let mine = step.top.first(where: { $0.token == id }) {
                        XCTAssertEqual(Double(mine.logprob), expected, accuracy: 2e-4, "\(label) token \(i) alternative \(id)")
                    } else {
                        // Only a near-tie with the fifth may swap places.
                        XCTAssertEqual(expected, c.top5_logprobs[i][4], accuracy: 1e-3, "\(label) token \(i): \(id) missing")
                    }
                }
            }
        }
        await scheduler.stop()
    }

    /// /v1/completions with `logprobs`: parallel lists whose tokens spell the text, offsets that
    /// add up, the chosen token in every top map, the golden values, and the same listing whether
    /// streamed or not.
    func testCompletionLogprobsFormat() async throws {
        let c = try Self.golden().cases[0]
        let server = try await TestServer.start(try Self.tinyModel())
        let port = server.port
        let body: [String: Any] = ["model": "tiny", "prompt": c.prompt_ids.map(Int.init), "max_tokens": 32, "temperature": 0,
                                   "logprobs": 2]
        let request = try JSONSerialization.data(withJSONObject: body)
        let streamRequest = try JSONSerialization.data(withJSONObject: body.merging(["stream": true]) { $1 })
        let whole = try await offThread { try httpRequest(port: port, method: "POST", path: "/v1/completions", body: request) }
        XCTAssertEqual(whole.status, 200, whole.text)
        let choice = try XCTUnwrap((whole.json["choices"] as? [[String: Any]])?.first)
        let text = try XCTUnwrap(choice["text"] as? String)
        let listing = try XCTUnwrap(choice["logprobs"] as? [String: Any])
        let tokens = try XCTUnwrap(listing["tokens"] as? [String])
        let values = try XCTUnwrap(listing["token_logprobs"] as? [Double])
        let tops = try XCTUnwrap(listing["top_logprobs"] as? [[String: Double]])
        let offsets = try XCTUnwrap(listing["text_offset"] as? [Int])
        XCTAssertEqual(tokens.count, c.output_ids.count)
        XCTAssertEqual(tokens.joined(), text)
        XCTAssertEqual(offsets, tokens.indices.map { tokens[..<$0].reduce(0) { $0 + $1.unicodeScalars.count } })
        for (i, value) in values.enumerated() {
            XCTAssertEqual(value, c.output_logprobs[i], accuracy: 2e-4, "token \(i)")
            XCTAssertEqual(tops[i][tokens[i]], value, "token \(i): the chosen token is in its top map")
            XCTAssertLessThanOrEqual(tops[i].count, 3)
            XCTAssertEqual(try XCTUnwrap(tops[i].values.max()), c.top5_logprobs[i][0], accuracy: 2e-4)
        }

        let streamed = try await offThread {
            try httpRequest(port: port, method: "POST", path: "/v1/completions", body: streamRequest)
        }
        let chunks = streamed.events.payloads.compactMap { ($0["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any] }
        XCTAssertEqual(chunks.flatMap { $0["tokens"] as? [String] ?? [] }, tokens)
        XCTAssertEqual(chunks.flatMap { $0["token_logprobs"] as? [Double] ?? [] }, values)
        XCTAssertEqual(chunks.flatMap { $0["text_offset"] as? [Int] ?? [] }, offsets)
        await server.stop()
    }

    /// /v1/chat/completions with `logprobs` and `top_logprobs`: one content entry per generated
    /// token, `bytes` that spell its `token`, `top_logprobs` lists most likely first with the
    /// greedy choice on top; streamed as in the whole answer.
    func testChatLogprobsFormat() async throws {
        let server = try await TestServer.start(try Self.tinyModel())
        let port = server.port
        let body: [String: Any] = ["model": "tiny", "messages": [["role": "user", "content": "Who is Mr. Darcy?"]],
                                   "max_tokens": 20, "temperature": 0, "logprobs": true, "top_logprobs": 3]
        let request = try JSONSerialization.data(withJSONObject: body)
        let streamRequest = try JSONSerialization.data(withJSONObject: body.merging(["stream": true]) { $1 })
        let whole = try await offThread { try httpRequest(port: port, method: "POST", path: "/v1/chat/completions", body: request) }
        XCTAssertEqual(whole.status, 200, whole.text)
        let choice = try XCTUnwrap((whole.json["choices"] as? [[String: Any]])?.first)
        let content = try XCTUnwrap((choice["logprobs"] as? [String: Any])?["content"] as? [[String: Any]])
        let usage = try XCTUnwrap(whole.json["usage"] as? [String: Any])
        XCTAssertEqual(content.count, usage["completion_tokens"] as? Int)
        for entry in content {
            let token = try XCTUnwrap(entry["token"] as? String)
            let bytes = try XCTUnwrap(entry["bytes"] as? [Int])
            XCTAssertEqual(String(decoding: bytes.map(UInt8.init), as: UTF8.self), token)
            let top = try XCTUnwrap(entry["top_logprobs"] as? [[String: Any]])
            XCTAssertEqual(top.count, 3)
            let topValues = top.compactMap { $0["logprob"] as? Double }
            XCTAssertEqual(topValues, topValues.sorted(by: >))
            XCTAssertEqual(top[0]["token"] as? String, token)
            XCTAssertEqual(top[0]["logprob"] as? Double, entry["logprob"] as? Double)
            XCTAssertLessThan(try XCTUnwrap(entry["logprob"] as? Double), 0)
        }

        let streamed = try await offThread {
            try httpRequest(port: port, method: "POST", path: "/v1/chat/completions", body: streamRequest)
        }
        let streamedContent = streamed.events.payloads.flatMap {
            (($0["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any])?["content"] as? [[String: Any]] ?? []
        }
        XCTAssertEqual(streamedContent.map { $0["token"] as? String }, content.map { $0["token"] as? String })
        XCTAssertEqual(streamedContent.map { $0["logprob"] as? Double }, content.map { $0["logprob"] as? Double })
        await server.stop()
    }

    /// `echo` with `logprobs` scores the prompt as lm-eval-harness asks for it: the first token
    /// without a value, every later one under the logits of the position before, equal to a
    /// transformers forward pass over the prompt within 2e-4, the most likely token among the
    /// alternatives; across prefill chunks (4 tokens), with `max_tokens` 0 (no generation) or
    /// followed by the generated tokens.
    func testEchoScoresThePromptLikeTransformers() async throws {
        let golden = try Self.golden()
        let served = try Self.tinyModel()
        let server = try await TestServer.start(served, options: ServerOptions(prefillChunk: 4))
        let port = server.port
        func name(_ id: Int32) -> String { String(decoding: served.language.tokenizer.tokenBytes(id), as: UTF8.self) }
        for c in golden.cases where c.repetition_penalty == nil {
            for generated in [0, 2] {
                let body = try JSONSerialization.data(withJSONObject: [
                    "model": "tiny", "prompt": c.prompt_ids.map(Int.init), "max_tokens": generated, "temperature": 0,
                    "echo": true, "logprobs": 1,
                ] as [String: Any])
                let result = try await offThread { try httpRequest(port: port, method: "POST", path: "/v1/completions", body: body) }
                XCTAssertEqual(result.status, 200, result.text)
                let choice = try XCTUnwrap((result.json["choices"] as? [[String: Any]])?.first)
                let listing = try XCTUnwrap(choice["logprobs"] as? [String: Any])
                let values = try XCTUnwrap(listing["token_logprobs"] as? [Any])
                let tops = try XCTUnwrap(listing["top_logprobs"] as? [Any])
                let tokens = try XCTUnwrap(listing["tokens"] as? [String])
                let label = "\(c.text.suffix(20)) + \(generated)"
                XCTAssertEqual(tokens, (c.prompt_ids + c.output_ids.prefix(generated)).map(name), label)
                XCTAssertEqual(values.count, c.prompt_ids.count + generated, label)
                XCTAssertTrue(values.first is NSNull && tops.first is NSNull, label)
                for (i, expected) in c.prompt_logprobs.enumerated() {
                    XCTAssertEqual(try XCTUnwrap(values[i + 1] as? Double), expected, accuracy: 2e-4, "\(label) prompt \(i + 1)")
                    let top = try XCTUnwrap(tops[i + 1] as? [String: Double])
                    XCTAssertNotNil(top[name(c.prompt_argmax_ids[i])], "\(label) prompt \(i + 1): the most likely token")
                }
                for i in 0..<generated {
                    let value = try XCTUnwrap(values[c.prompt_ids.count + i] as? Double)
                    XCTAssertEqual(value, c.output_logprobs[i], accuracy: 2e-4, "\(label) generated \(i)")
                }
                let text = try XCTUnwrap(choice["text"] as? String)
                let prompt = served.language.tokenizer.decode(c.prompt_ids, skipSpecialTokens: true)
                XCTAssertTrue(text.hasPrefix(prompt) && text.count > prompt.count || generated == 0 && text == prompt, label)
                XCTAssertEqual((result.json["usage"] as? [String: Any])?["completion_tokens"] as? Int, generated)
                if generated == 0 { XCTAssertEqual(choice["finish_reason"] as? String, "length") }
            }
        }
        await server.stop()
    }

    /// Without `logprobs` the choices carry `"logprobs": null`, as before.
    func testNoLogprobsUnlessAsked() async throws {
        let server = try await TestServer.start(try Self.tinyModel())
        let port = server.port
        let result = try await offThread {
            try httpPost(port: port, "/v1/completions", json: ["model": "tiny", "prompt": "It is", "max_tokens": 3])
        }
        let choice = try XCTUnwrap((result.json["choices"] as? [[String: Any]])?.first)
        XCTAssertTrue(choice["logprobs"] is NSNull)
        await server.stop()
    }
}
