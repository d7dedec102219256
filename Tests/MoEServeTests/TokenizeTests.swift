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
        let ids = try tokenizer.encode(text, addBOS: true, parseSpecialTokens: true)
        XCTAssertEqual(prompt.json["tokens"] as? [Int], ids.map(Int.init))
        XCTAssertEqual(prompt.json["count"] as? Int, ids.count)
        XCTAssertEqual(prompt.json["max_model_len"] as? Int, server.server.contextLimit)
        // The same count as a completion's usage.
        let completion = try await post(port, "/v1/completions", ["model": "tiny", "prompt": text, "max_tokens": 1])
        XCTAssertEqual((completion.json["usage"] as? [String: Any])?["prompt_tokens"] as? Int, ids.count)

        let bare = try await post(port, "/tokenize", ["prompt": text, "add_special_tokens": false])
        XCTAssertEqual(bare.json["tokens"] as? [Int], Array(ids.dropFirst()).map(Int.init))

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
}
