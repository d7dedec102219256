import Foundation
@testable import MoEServe
import MoERuntime
import MoETokenizer
import XCTest

/// What the server generates: the generation API's output, in OpenAI's formats, batched.
final class GenerationTests: XCTestCase {
    /// The generation API's greedy continuation of `prompt`.
    func reference(_ model: ServedModel, prompt: String, maxTokens: Int, stop: [String] = [],
                   sampling: SamplingOptions = .greedy) throws -> (text: String, summary: GenerationSummary) {
        let session = model.language.makeSession()
        let options = GenerationOptions(maxTokens: maxTokens, sampling: sampling, stopStrings: stop, addBOS: true)
        var text = ""
        let summary = try session.generate(tokens: try session.encode(prompt: prompt, addBOS: true), options: options) { event in
            if case .token(_, let piece) = event { text += piece }
        }
        return (text, summary)
    }

    /// Concurrent greedy requests (so they share decode steps) each equal the generation API's output.
    func testGreedyOutputEqualsGenerationAPI() async throws {
        let model = try TestModels.fixture()
        let server = try await TestServer.start(model, options: ServerOptions(maxBatch: 4, prefillChunk: 3))
        let port = server.port
        let prompts = ["The quick brown fox", "a", "Hello, world! How are you today?", "0123456789", "zz top", "MoE"]
        let lengths = [40, 25, 33, 12, 50, 7]
        let results = try await withThrowingTaskGroup(of: (Int, HTTPResult).self) { group in
            for (i, prompt) in prompts.enumerated() {
                group.addTask {
                    let stream = i % 2 == 1
                    let result = try await offThread {
                        try httpPost(port: port, "/v1/completions", json: [
                            "model": "fixture", "prompt": prompt, "max_tokens": lengths[i], "temperature": 0,
                            "stream": stream,
                        ])
                    }
                    return (i, result)
                }
            }
            var byIndex: [Int: HTTPResult] = [:]
            for try await (i, result) in group { byIndex[i] = result }
            return byIndex
        }
        for (i, prompt) in prompts.enumerated() {
            let expected = try reference(model, prompt: prompt, maxTokens: lengths[i])
            let result = try XCTUnwrap(results[i])
            XCTAssertEqual(result.status, 200, result.text)
            let text: String
            if i % 2 == 1 {
                let (events, done) = result.events
                XCTAssertTrue(done)
                text = events.compactMap { ($0["choices"] as? [[String: Any]])?.first?["text"] as? String }.joined()
            } else {
                text = (result.json["choices"] as? [[String: Any]])?.first?["text"] as? String ?? "<missing>"
                let usage = result.json["usage"] as? [String: Any]
                XCTAssertEqual(usage?["completion_tokens"] as? Int, expected.summary.generatedTokens)
                XCTAssertEqual(usage?["prompt_tokens"] as? Int, expected.summary.promptTokens)
                XCTAssertEqual(usage?["total_tokens"] as? Int, expected.summary.generatedTokens + expected.summary.promptTokens)
            }
            XCTAssertEqual(text, expected.text, "prompt \(i)")
        }
        // The requests really were decoded together.
        XCTAssertTrue(server.server.metrics.render(running: 0, queued: 0).contains("moepack_decode_rows_total"))
        XCTAssertGreaterThan(server.server.metrics.decodeRowsPerStep, 1.0)
        await server.stop()
    }

    /// presence_penalty, frequency_penalty and repetition_penalty reach the sampler: requests that
    /// share decode steps each equal the generation API's greedy output under the same penalties,
    /// which differs from the output without them.
    func testPenaltiesEqualGenerationAPI() async throws {
        let model = try TestModels.fixture()
        let server = try await TestServer.start(model, options: ServerOptions(maxBatch: 4))
        let port = server.port
        let prompt = "The quick brown fox"
        let penalties: [(body: [String: Any], sampling: SamplingOptions)] = [
            (["frequency_penalty": 1.5], SamplingOptions(frequencyPenalty: 1.5)),
            (["presence_penalty": 2], SamplingOptions(presencePenalty: 2)),
            (["repetition_penalty": 1.8], SamplingOptions(repetitionPenalty: 1.8)),
            (["repetition_penalty": 1.2, "frequency_penalty": 0.5, "presence_penalty": -0.7],
             SamplingOptions(repetitionPenalty: 1.2, presencePenalty: -0.7, frequencyPenalty: 0.5)),
        ]
        let bodies = try penalties.map {
            try JSONSerialization.data(withJSONObject: ["model": "fixture", "prompt": prompt, "max_tokens": 40,
                                                        "temperature": 0].merging($0.body) { $1 })
        }
        let results = try await withThrowingTaskGroup(of: (Int, HTTPResult).self) { group in
            for (i, body) in bodies.enumerated() {
                group.addTask {
                    (i, try await offThread { try httpRequest(port: port, method: "POST", path: "/v1/completions", body: body) })
                }
            }
            var byIndex: [Int: HTTPResult] = [:]
            for try await (i, result) in group { byIndex[i] = result }
            return byIndex
        }
        let plain = try reference(model, prompt: prompt, maxTokens: 40).text
        for (i, p) in penalties.enumerated() {
            let result = try XCTUnwrap(results[i])
            XCTAssertEqual(result.status, 200, result.text)
            let text = (result.json["choices"] as? [[String: Any]])?.first?["text"] as? String
            let expected = try reference(model, prompt: prompt, maxTokens: 40, sampling: p.sampling).text
            XCTAssertEqual(text, expected, "\(p.body)")
            XCTAssertNotEqual(expected, plain, "\(p.body) changes nothing on this prompt")
        }
        await server.stop()
    }

    func testChatStreamingFormat() async throws {
        let model = try TestModels.fixture()
        let server = try await TestServer.start(model)
        let port = server.port
        let request: [String: Any] = [
            "model": "fixture", "max_tokens": 20, "temperature": 0,
            "messages": [["role": "system", "content": "Be brief."], ["role": "user", "content": "Hi there"]],
        ]
        let wholeBody = try JSONSerialization.data(withJSONObject: request)
        let whole = try await offThread { try httpRequest(port: port, method: "POST", path: "/v1/chat/completions", body: wholeBody) }
        XCTAssertEqual(whole.status, 200, whole.text)
        XCTAssertEqual(whole.json["object"] as? String, "chat.completion")
        let choice = try XCTUnwrap((whole.json["choices"] as? [[String: Any]])?.first)
        let message = try XCTUnwrap(choice["message"] as? [String: Any])
        XCTAssertEqual(message["role"] as? String, "assistant")
        let content = try XCTUnwrap(message["content"] as? String)

        // The chat prompt is the rendered conversation; the answer is the generation API's.
        let rendered = try model.language.chatPrompt([ChatMessage(role: "system", content: "Be brief."),
                                                      ChatMessage(role: "user", content: "Hi there")])
        let session = model.language.makeSession()
        var expected = ""
        let summary = try session.generate(tokens: try session.encode(prompt: rendered, addBOS: false),
                                           options: GenerationOptions(maxTokens: 20, addBOS: false)) { event in
            if case .token(_, let piece) = event { expected += piece }
        }
        XCTAssertEqual(content, expected)
        XCTAssertEqual((whole.json["usage"] as? [String: Any])?["prompt_tokens"] as? Int, summary.promptTokens)

        var streamed = request
        streamed["stream"] = true
        streamed["stream_options"] = ["include_usage": true]
        let streamBody = try JSONSerialization.data(withJSONObject: streamed)
        let stream = try await offThread { try httpRequest(port: port, method: "POST", path: "/v1/chat/completions", body: streamBody) }
        XCTAssertEqual(stream.status, 200)
        XCTAssertEqual(stream.headers["content-type"], "text/event-stream")
        XCTAssertTrue(stream.text.hasSuffix("data: [DONE]\n\n"))
        let (events, done) = stream.events
        XCTAssertTrue(done)
        XCTAssertGreaterThanOrEqual(events.count, 3)
        let ids = Set(events.compactMap { $0["id"] as? String })
        XCTAssertEqual(ids.count, 1, "one id for every chunk")
        XCTAssertTrue(ids.first?.hasPrefix("chatcmpl-") ?? false)
        for event in events { XCTAssertEqual(event["object"] as? String, "chat.completion.chunk") }
        let first = try XCTUnwrap((events.first?["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any])
        XCTAssertEqual(first["role"] as? String, "assistant")
        // Choices chunks: text deltas, then one with a finish reason; then the usage chunk.
        let choiceEvents = events.filter { !(($0["choices"] as? [Any])?.isEmpty ?? true) }
        let text = choiceEvents.compactMap { (($0["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any])?["content"] as? String }.joined()
        XCTAssertEqual(text, content)
        let reasons = choiceEvents.map { ($0["choices"] as? [[String: Any]])?.first?["finish_reason"] }
        XCTAssertTrue(reasons.dropLast().allSatisfy { $0 is NSNull }, "only the last choice chunk has a finish reason")
        XCTAssertEqual(reasons.last as? String, choice["finish_reason"] as? String)
        let usage = try XCTUnwrap(events.last?["usage"] as? [String: Any])
        XCTAssertEqual(usage["completion_tokens"] as? Int, summary.generatedTokens)
        XCTAssertEqual((events.last?["choices"] as? [Any])?.count, 0)
        await server.stop()
    }

    func testStopStringsAndLengthFinish() async throws {
        let model = try TestModels.fixture()
        let free = try reference(model, prompt: "stop test", maxTokens: 30)
        // Stop at a piece of the free-running answer: the reply ends right before it.
        let characters = Array(free.text)
        guard characters.count >= 8 else { throw XCTSkip("the fixture's answer is too short to cut") }
        let stop = String(characters[5..<8])
        let expected = try reference(model, prompt: "stop test", maxTokens: 30, stop: [stop])
        XCTAssertEqual(expected.summary.finishReason, .stopString)
        let server = try await TestServer.start(model)
        let port = server.port
        let result = try await offThread {
            try httpPost(port: port, "/v1/completions", json: ["model": "fixture", "prompt": "stop test", "max_tokens": 30,
                                                                "temperature": 0, "stop": [stop]])
        }
        let choice = try XCTUnwrap((result.json["choices"] as? [[String: Any]])?.first)
        XCTAssertEqual(choice["text"] as? String, expected.text)
        XCTAssertFalse((choice["text"] as? String ?? stop).contains(stop))
        XCTAssertEqual(choice["finish_reason"] as? String, "stop")

        let short = try await offThread {
            try httpPost(port: port, "/v1/completions", json: ["model": "fixture", "prompt": [1, 70, 80], "max_tokens": 4,
                                                                "temperature": 0.8, "seed": 11])
        }
        let shortChoice = try XCTUnwrap((short.json["choices"] as? [[String: Any]])?.first)
        XCTAssertEqual(shortChoice["finish_reason"] as? String, "length")
        XCTAssertEqual((short.json["usage"] as? [String: Any])?["prompt_tokens"] as? Int, 3)
        // The same seed gives the same sample.
        let again = try await offThread {
            try httpPost(port: port, "/v1/completions", json: ["model": "fixture", "prompt": [1, 70, 80], "max_tokens": 4,
                                                                "temperature": 0.8, "seed": 11])
        }
        XCTAssertEqual((again.json["choices"] as? [[String: Any]])?.first?["text"] as? String, shortChoice["text"] as? String)
        await server.stop()
    }

    func testModelsHealthAndMetrics() async throws {
        let server = try await TestServer.start(try TestModels.fixture(), options: ServerOptions(maxContext: 100))
        let port = server.port
        let models = try await offThread { try httpRequest(port: port, method: "GET", path: "/v1/models") }
        XCTAssertEqual(models.status, 200)
        XCTAssertEqual(models.json["object"] as? String, "list")
        let card = try XCTUnwrap((models.json["data"] as? [[String: Any]])?.first)
        XCTAssertEqual(card["id"] as? String, "fixture")
        XCTAssertEqual(card["object"] as? String, "model")
        XCTAssertEqual(card["max_model_len"] as? Int, 100)
        let one = try await offThread { try httpRequest(port: port, method: "GET", path: "/v1/models/fixture") }
        XCTAssertEqual(one.json["id"] as? String, "fixture")
        let health = try await offThread { try httpRequest(port: port, method: "GET", path: "/health") }
        XCTAssertEqual(health.json["status"] as? String, "ok")
        let completion = try await offThread {
            try httpPost(port: port, "/v1/completions", json: ["model": "fixture", "prompt": "abc", "max_tokens": 5,
                                                                "temperature": 0])
        }
        let generated = try XCTUnwrap((completion.json["usage"] as? [String: Any])?["completion_tokens"] as? Int)
        XCTAssertGreaterThanOrEqual(generated, 1)
        let metrics = try await offThread { try httpRequest(port: port, method: "GET", path: "/metrics") }
        XCTAssertEqual(metrics.status, 200)
        XCTAssertTrue(metrics.headers["content-type"]?.hasPrefix("text/plain") ?? false)
        for line in ["moepack_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 1",
                     "moepack_prompt_tokens_total 4", "moepack_generated_tokens_total \(generated)",
                     "moepack_time_to_first_token_seconds_count 1",
                     "moepack_time_per_output_token_seconds_count \(generated - 1)",
                     "moepack_time_to_first_token_seconds_bucket{le=\"+Inf\"} 1",
                     "moepack_running_sequences 0", "moepack_queued_sequences 0",
                     "# TYPE moepack_time_per_output_token_seconds histogram"] {
            XCTAssertTrue(metrics.text.contains(line + "\n"), "missing \(line) in\n\(metrics.text)")
        }
        await server.stop()
    }
}

/// `n` choices: each its own sequence in the batch, choice i sampled with seed + i.
final class ChoicesTests: XCTestCase {
    private func post(_ port: Int, _ path: String, _ body: [String: Any]) async throws -> HTTPResult {
        let data = try JSONSerialization.data(withJSONObject: body)
        return try await offThread { try httpRequest(port: port, method: "POST", path: path, body: data) }
    }

    private func texts(_ result: HTTPResult) -> [Int: String] {
        var byIndex: [Int: String] = [:]
        for choice in result.json["choices"] as? [[String: Any]] ?? [] {
            let text = choice["text"] as? String ?? ((choice["message"] as? [String: Any])?["content"] as? String)
            byIndex[choice["index"] as? Int ?? -1] = text
        }
        return byIndex
    }

    /// Sampled choices are different draws, and choice i is exactly the one-choice request with
    /// seed + i; usage counts the prompt once and every choice's tokens.
    func testChoiceIIsTheDrawWithSeedPlusI() async throws {
        let server = try await TestServer.start(try TestModels.fixture(), options: ServerOptions(maxBatch: 4))
        let port = server.port
        let base: [String: Any] = ["model": "fixture", "prompt": "The quick brown fox", "max_tokens": 12,
                                   "temperature": 1.2, "seed": 41]
        let many = try await post(port, "/v1/completions", base.merging(["n": 3]) { $1 })
        XCTAssertEqual(many.status, 200, many.text)
        let choices = texts(many)
        XCTAssertEqual(choices.keys.sorted(), [0, 1, 2])
        XCTAssertGreaterThan(Set(choices.values).count, 1, "\(choices)")
        var completionTokens = 0
        for i in 0..<3 {
            let one = try await post(port, "/v1/completions", base.merging(["seed": 41 + i]) { $1 })
            XCTAssertEqual(texts(one)[0], choices[i], "choice \(i)")
            completionTokens += (one.json["usage"] as? [String: Any])?["completion_tokens"] as? Int ?? 0
        }
        let usage = try XCTUnwrap(many.json["usage"] as? [String: Any])
        XCTAssertEqual(usage["completion_tokens"] as? Int, completionTokens)
        let single = try await post(port, "/v1/completions", base)
        XCTAssertEqual(usage["prompt_tokens"] as? Int, (single.json["usage"] as? [String: Any])?["prompt_tokens"] as? Int)
        await server.stop()
    }

    /// Streamed chat with n = 3: every chunk names its choice, each choice gets its role chunk, its
    /// text (equal to the whole answer's) and one finish chunk; usage and [DONE] come once, last.
    func testStreamedChoicesInterleaveByIndex() async throws {
        let server = try await TestServer.start(try TestModels.fixture(), options: ServerOptions(maxBatch: 4))
        let port = server.port
        let body: [String: Any] = ["model": "fixture", "messages": [["role": "user", "content": "Hi there"]],
                                   "max_tokens": 10, "temperature": 0.9, "seed": 5, "n": 3]
        let whole = try await post(port, "/v1/chat/completions", body)
        XCTAssertEqual(whole.status, 200, whole.text)
        let streamed = try await post(port, "/v1/chat/completions",
                                      body.merging(["stream": true, "stream_options": ["include_usage": true]]) { $1 })
        let (events, done) = streamed.events
        XCTAssertTrue(done)
        var text: [Int: String] = [:], roles: [Int: Int] = [:], finishes: [Int: Int] = [:]
        for event in events.dropLast() {
            let choices = try XCTUnwrap(event["choices"] as? [[String: Any]])
            XCTAssertEqual(choices.count, 1)
            let index = try XCTUnwrap(choices[0]["index"] as? Int)
            let delta = choices[0]["delta"] as? [String: Any] ?? [:]
            if delta["role"] != nil { roles[index, default: 0] += 1 }
            text[index, default: ""] += delta["content"] as? String ?? ""
            if choices[0]["finish_reason"] is String { finishes[index, default: 0] += 1 }
        }
        XCTAssertEqual(roles, [0: 1, 1: 1, 2: 1])
        XCTAssertEqual(finishes, [0: 1, 1: 1, 2: 1])
        XCTAssertEqual(text, texts(whole))
        let usage = try XCTUnwrap(events.last?["usage"] as? [String: Any])
        XCTAssertEqual(usage["completion_tokens"] as? Int, (whole.json["usage"] as? [String: Any])?["completion_tokens"] as? Int)
        await server.stop()
    }

    /// Several prompts (strings, or lists of token ids) with n choices each: choice j of prompt i
    /// has index i * n + j and equals that prompt's own request; usage counts each prompt once.
    func testSeveralPromptsAnswerInOrder() async throws {
        let model = try TestModels.fixture()
        let server = try await TestServer.start(model, options: ServerOptions(maxBatch: 4))
        let port = server.port
        let prompts = ["The quick brown fox", "a", "Hello, world!"]
        let base: [String: Any] = ["model": "fixture", "max_tokens": 9, "temperature": 0.8, "seed": 3]
        let batch = try await post(port, "/v1/completions", base.merging(["prompt": prompts, "n": 2]) { $1 })
        XCTAssertEqual(batch.status, 200, batch.text)
        let choices = texts(batch)
        XCTAssertEqual(choices.keys.sorted(), Array(0..<6))
        var promptTokens = 0
        for (i, prompt) in prompts.enumerated() {
            let alone = try await post(port, "/v1/completions", base.merging(["prompt": prompt, "n": 2]) { $1 })
            XCTAssertEqual(choices[2 * i], texts(alone)[0], prompt)
            XCTAssertEqual(choices[2 * i + 1], texts(alone)[1], prompt)
            promptTokens += (alone.json["usage"] as? [String: Any])?["prompt_tokens"] as? Int ?? 0
        }
        XCTAssertEqual((batch.json["usage"] as? [String: Any])?["prompt_tokens"] as? Int, promptTokens)
        // Token-id prompts, echoed.
        let session = model.language.makeSession()
        let ids = try prompts.map { try session.encode(prompt: $0, addBOS: true).map(Int.init) }
        let echoed = try await post(port, "/v1/completions", base.merging(["prompt": ids, "echo": true, "max_tokens": 3]) { $1 })
        XCTAssertEqual(echoed.status, 200, echoed.text)
        for (i, prompt) in prompts.enumerated() {
            XCTAssertTrue(texts(echoed)[i]?.hasPrefix(prompt) == true, "\(texts(echoed)[i] ?? "nil") starts with \(prompt)")
        }
        await server.stop()
    }

    /// Choices of one prompt prefill it once (the others copy the KV cache): the server computes
    /// each prompt's tokens once however many choices it has, while every choice still equals its
    /// one-choice request (above) and echoed prompts score the same.
    func testChoicesShareOnePrefill() async throws {
        let server = try await TestServer.start(try TestModels.fixture(), options: ServerOptions(maxBatch: 8, prefillChunk: 4))
        let port = server.port
        func prefilled() async throws -> Int {
            let text = try await offThread { try httpRequest(port: port, method: "GET", path: "/metrics") }.text
            let line = text.split(separator: "\n").first { $0.hasPrefix("moepack_prefilled_tokens_total ") }
            return Int(line?.split(separator: " ").last ?? "") ?? -1
        }
        let prompts = ["The quick brown fox jumps", "zz"]
        let before = try await prefilled()
        let result = try await post(port, "/v1/completions", ["model": "fixture", "prompt": prompts, "n": 4, "max_tokens": 5,
                                                              "temperature": 1, "seed": 9, "echo": true, "logprobs": 1])
        XCTAssertEqual(result.status, 200, result.text)
        let usage = try XCTUnwrap(result.json["usage"] as? [String: Any])
        let after = try await prefilled()
        XCTAssertEqual(after - before, usage["prompt_tokens"] as? Int)
        let choices = try XCTUnwrap(result.json["choices"] as? [[String: Any]])
        XCTAssertEqual(choices.count, 8)
        for group in 0..<2 {
            let scores = choices[(4 * group)..<(4 * group + 4)].map {
                (($0["logprobs"] as? [String: Any])?["token_logprobs"] as? [Any])?.prefix(prompts[group].count + 1).compactMap { $0 as? Double }
            }
            XCTAssertEqual(Set(scores.map { $0 ?? [] }).count, 1, "prompt \(group): every choice scores the prompt the same")
        }
        await server.stop()
    }

    /// More choices than the queue holds: 503 and nothing left behind.
    func testChoicesBeyondTheQueueAreRefusedWhole() async throws {
        let server = try await TestServer.start(try TestModels.fixture(), options: ServerOptions(maxBatch: 2, maxQueue: 2))
        let port = server.port
        let result = try await post(port, "/v1/completions", ["model": "fixture", "prompt": "a", "max_tokens": 4, "n": 5])
        XCTAssertEqual(result.status, 503, result.text)
        let after = try await post(port, "/v1/completions", ["model": "fixture", "prompt": "a", "max_tokens": 4, "n": 4])
        XCTAssertEqual(after.status, 200, after.text)
        XCTAssertEqual(texts(after).count, 4)
        await server.stop()
    }
}
