import Foundation
@testable import MoEServe
import MoERuntime
import MoETestSupport
import MoETokenizer
import XCTest

/// POST /tokenize and /detokenize on the built-in model: the ids the generation endpoints would
/// run (a text prompt with its beginning-of-sequence id, a conversation through the chat template)
/// and their text back.
final class TokenizeTests: XCTestCase {
    private func post(_ port: Int, _ path: String, _ body: [String: Any], headers: [String: String] = [:]) async throws -> HTTPResult {
        let data = try JSONSerialization.data(withJSONObject: body)
        return try await offThread { try httpRequest(port: port, method: "POST", path: path, body: data, headers: headers) }
    }

    func testTokensAreTheOnesGenerationRuns() async throws {
        let served = try ServedModel.load(path: Fixtures.tinyModel.path, name: "tiny")
        let server = try await TestServer.start(served)
        let port = server.port
        let tokenizer = served.language.tokenizer
        let text = "It is a truth universally acknowledged"

        let prompt = try await post(port, "/tokenize", ["model": "tiny", "prompt": text])
        XCTAssertEqual(prompt.status, 200, prompt.text)
        // The shipped tokenizer_config.json says add_bos_token false: no BOS, as transformers tokenizes it.
        let ids = try tokenizer.encode(text, addBOS: false, parseSpecialTokens: true)
        XCTAssertNotEqual(ids.first, 1)
        XCTAssertEqual(prompt.json["tokens"] as? [Int], ids.map(Int.init))
        XCTAssertEqual(prompt.json["count"] as? Int, ids.count)
        XCTAssertEqual(prompt.json["max_model_len"] as? Int, server.server.contextLimit)
        // The same count as a completion's usage.
        let completion = try await post(port, "/v1/completions", ["model": "tiny", "prompt": text, "max_tokens": 1])
        XCTAssertEqual((completion.json["usage"] as? [String: Any])?["prompt_tokens"] as? Int, ids.count)

        let bare = try await post(port, "/tokenize", ["prompt": text, "add_special_tokens": false])
        XCTAssertEqual(bare.json["tokens"] as? [Int], ids.map(Int.init))

        let messages = [["role": "system", "content": "Be brief."], ["role": "user", "content": "Who is Mr. Darcy?"]]
        let chat = try await post(port, "/tokenize", ["messages": messages])
        let rendered = try served.language.chatPrompt(messages.map { ChatMessage(role: $0["role"]!, content: $0["content"]!) })
        XCTAssertEqual(chat.json["tokens"] as? [Int], try tokenizer.encode(rendered, addBOS: false, parseSpecialTokens: true).map(Int.init))

        let back = try await post(port, "/detokenize", ["tokens": ids.map(Int.init)])
        XCTAssertEqual(back.status, 200, back.text)
        XCTAssertEqual(back.json["prompt"] as? String, tokenizer.decode(ids, skipSpecialTokens: false))
        XCTAssertTrue((back.json["prompt"] as? String)?.hasSuffix(text) == true)

        let bad: [(path: String, body: [String: Any], status: Int, param: String?)] = [
            ("/tokenize", [:], 400, "prompt"),
            ("/tokenize", ["prompt": "a", "messages": messages], 400, "prompt"),
            ("/tokenize", ["prompt": 5], 400, "prompt"),
            ("/tokenize", ["messages": []], 400, "messages"),
            ("/tokenize", ["model": "other", "prompt": "a"], 404, "model"),
            ("/detokenize", [:], 400, "tokens"),
            ("/detokenize", ["tokens": [1, 999_999]], 400, "tokens"),
            ("/detokenize", ["tokens": "1 2"], 400, "tokens"),
        ]
        for c in bad {
            let result = try await post(port, c.path, c.body)
            XCTAssertEqual(result.status, c.status, "\(c.path) \(c.body): \(result.text)")
            XCTAssertEqual(result.errorParam, c.param, "\(c.path) \(c.body)")
        }
        await server.stop()
    }

    func testAKeyedServerGuardsThemToo() async throws {
        let server = try await TestServer.start(try TestModels.fixture(), options: ServerOptions(apiKey: "k"))
        let port = server.port
        let refused = try await post(port, "/tokenize", ["prompt": "a"])
        XCTAssertEqual(refused.status, 401)
        let allowed = try await post(port, "/tokenize", ["prompt": "a"], headers: ["Authorization": "Bearer k"])
        XCTAssertEqual(allowed.status, 200, allowed.text)
        await server.stop()
    }

    private struct GenerateGolden: Decodable {
        struct Case: Decodable {
            let text: String
            let tokenizer_add_bos_token: Bool
            let prompt_ids: [Int]
            let output_ids: [Int]
            let messages: [[String: String]]?
            let repetition_penalty: Double?
        }
        let cases: [Case]
    }

    /// /v1/completions runs the prompt ids transformers' tokenizer gives (BOS only where
    /// tokenizer_config.json says add_bos_token true) and answers transformers' greedy tokens.
    func testCompletionsTokenizeAsTransformersDoes() async throws {
        let golden = try JSONDecoder().decode(GenerateGolden.self,
                                              from: Data(contentsOf: Fixtures.root.appendingPathComponent("tiny-moe/generate.json")))
        let variant = try Fixtures.temporaryDirectory().appendingPathComponent("tiny-add-bos")
        defer { try? FileManager.default.removeItem(at: variant.deletingLastPathComponent()) }
        try FileManager.default.copyItem(at: Fixtures.tinyModel, to: variant)
        let file = variant.appendingPathComponent("tokenizer_config.json")
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
        config["add_bos_token"] = true
        try JSONSerialization.data(withJSONObject: config).write(to: file)

        for addBOS in [false, true] {
            let served = try ServedModel.load(path: addBOS ? variant.path : Fixtures.tinyModel.path, name: "tiny")
            let server = try await TestServer.start(served)
            let cases = golden.cases.filter { $0.tokenizer_add_bos_token == addBOS && $0.messages == nil && $0.repetition_penalty == nil }
            XCTAssertEqual(cases.count, 2)
            for c in cases {
                let tokens = try await post(server.port, "/tokenize", ["prompt": c.text])
                XCTAssertEqual(tokens.json["tokens"] as? [Int], c.prompt_ids, "add_bos_token \(addBOS)")
                let answer = try await post(server.port, "/v1/completions",
                                            ["model": "tiny", "prompt": c.text, "max_tokens": 32, "temperature": 0, "logprobs": 0])
                XCTAssertEqual(answer.status, 200, answer.text)
                let usage = try XCTUnwrap(answer.json["usage"] as? [String: Any])
                XCTAssertEqual(usage["prompt_tokens"] as? Int, c.prompt_ids.count)
                let choice = try XCTUnwrap((answer.json["choices"] as? [[String: Any]])?.first)
                let text = try XCTUnwrap(choice["text"] as? String)
                let expected = served.language.tokenizer.decode(c.output_ids.map(Int32.init), skipSpecialTokens: true)
                XCTAssertTrue(text == expected || " " + text == expected || text == " " + expected,
                              "add_bos_token \(addBOS): \(text.debugDescription) vs \(expected.debugDescription)")
            }
            await server.stop()
        }
    }

    /// A request that sets no temperature takes generation_config.json's (as vLLM does): with
    /// temperature 0 there, any seed gives transformers' greedy continuation.
    func testRequestsWithoutSamplingFieldsTakeTheModelsDefaults() async throws {
        let golden = try JSONDecoder().decode(GenerateGolden.self,
                                              from: Data(contentsOf: Fixtures.root.appendingPathComponent("tiny-moe/generate.json")))
        let plain = try XCTUnwrap(golden.cases.first { !$0.tokenizer_add_bos_token && $0.messages == nil && $0.repetition_penalty == nil })
        let variant = try Fixtures.temporaryDirectory().appendingPathComponent("tiny-cold")
        defer { try? FileManager.default.removeItem(at: variant.deletingLastPathComponent()) }
        try FileManager.default.copyItem(at: Fixtures.tinyModel, to: variant)
        try Data(#"{"eos_token_id": [2, 5], "temperature": 0.0}"#.utf8).write(to: variant.appendingPathComponent("generation_config.json"))
        let served = try ServedModel.load(path: variant.path, name: "tiny")
        XCTAssertEqual(served.language.generationDefaults.temperature, 0)
        let server = try await TestServer.start(served)
        let expected = served.language.tokenizer.decode(plain.output_ids.map(Int32.init), skipSpecialTokens: true)
        for seed in [1, 2] {
            let answer = try await post(server.port, "/v1/completions", ["model": "tiny", "prompt": plain.text, "max_tokens": 32, "seed": seed])
            let text = try XCTUnwrap(((answer.json["choices"] as? [[String: Any]])?.first)?["text"] as? String, answer.text)
            XCTAssertTrue(text == expected || " " + text == expected || text == " " + expected, "seed \(seed): \(text.debugDescription)")
        }
        await server.stop()
    }
}
