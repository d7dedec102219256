import Foundation
import XCTest
@testable import MoETokenizer

/// Real chat templates rendered by the Jinja interpreter against transformers'
/// `apply_chat_template` (tools/make_chat_fixtures.py; Tests/Fixtures/tokenizer_chat).
final class ChatTemplateReferenceTests: XCTestCase {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer_chat")

    struct Case: Decodable {
        let template: String
        let special_tokens: [String: String]
        let messages: [ChatMessage]
        let add_generation_prompt: Bool
        let variables: [String: Bool]
        let rendered: String?
        let error: String?
    }

    static let bpe: ByteLevelBPETokenizer = try! ByteLevelBPETokenizer(
        url: directory.deletingLastPathComponent().appendingPathComponent("tokenizer_bpe/qwen2_bpe/tokenizer.json"))

    /// A tokenizer whose tokenizer_config.json carries `template` and the case's special tokens.
    static func tokenizer(template: String, special: [String: String]) throws -> Tokenizer {
        var config: [String: Any] = special
        config["chat_template"] = try String(contentsOf: directory.appendingPathComponent("templates/\(template)"), encoding: .utf8)
        return try Tokenizer(byteLevelBPE: bpe, configFiles: ["tokenizer_config.json": JSONSerialization.data(withJSONObject: config)])
    }

    func testRenderingsEqualTransformers() throws {
        let cases = try JSONDecoder().decode([Case].self, from: Data(contentsOf: Self.directory.appendingPathComponent("cases.json")))
        XCTAssertGreaterThan(cases.count, 100)
        var matched: [String: (Int, Int)] = [:]
        for c in cases {
            let tok = try Self.tokenizer(template: c.template, special: c.special_tokens)
            XCTAssertTrue(tok.hasModelChatTemplate)
            let what = "\(c.template) \(c.messages.map(\.role)) gen=\(c.add_generation_prompt) \(c.variables)"
            let result = Result { try tok.renderChat(c.messages, addGenerationPrompt: c.add_generation_prompt,
                                                      variables: c.variables.mapValues { .bool($0) }) }
            var ok = false
            switch (result, c.rendered, c.error) {
            case (.success(let text), let want?, _):
                ok = text == want
                XCTAssertEqual(visible(text), visible(want), what)
            case (.failure(let error), _, let want?):
                ok = error as? ChatTemplateError == .raised(want)
                XCTAssertEqual(error as? ChatTemplateError, .raised(want), what)
            case (.success(let text), nil, let want):
                XCTFail("\(what): rendered \(visible(text)) but transformers refused: \(want ?? "")")
            case (.failure(let error), _, nil):
                XCTFail("\(what): \(error)")
            }
            let (n, total) = matched[c.template] ?? (0, 0)
            matched[c.template] = (n + (ok ? 1 : 0), total + 1)
        }
        for (name, (n, total)) in matched.sorted(by: { $0.key < $1.key }) { print("\(name): \(n)/\(total) renderings equal transformers'") }
    }

    func testQwen3ThinkingSwitch() throws {
        let tok = try Self.tokenizer(template: "qwen3.jinja", special: ["eos_token": "<|im_end|>"])
        let messages = [ChatMessage(role: "user", content: "Hi")]
        let on = try tok.renderChat(messages, variables: ["enable_thinking": .bool(true)])
        let off = try tok.renderChat(messages, variables: ["enable_thinking": .bool(false)])
        XCTAssertEqual(on, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        XCTAssertEqual(off, on + "<think>\n\n</think>\n\n")
        // The rendered prompt's special tokens become single ids.
        let ids = try tok.encodeChat(messages)
        XCTAssertEqual(ids.first, tok.specialTokenID("<|im_start|>"))
    }

    func testWithoutATemplateTheBuiltInErnieFormatIsUsed() throws {
        let tok = try Tokenizer(byteLevelBPE: Self.bpe, configFiles: [:])
        XCTAssertFalse(tok.hasModelChatTemplate)
        let messages = [ChatMessage(role: "user", content: "Hi")]
        XCTAssertEqual(try tok.renderChat(messages), ChatTemplate.ernie.render(messages: messages))
    }

    func testChatTemplateJinjaFileAndNamedTemplates() throws {
        let jinja = Data("{{ bos_token }}{% for m in messages %}[{{ m.content }}]{% endfor %}".utf8)
        let a = try Tokenizer(byteLevelBPE: Self.bpe, configFiles: ["chat_template.jinja": jinja,
                                                                   "tokenizer_config.json": Data(#"{"bos_token": "<s>", "chat_template": "x"}"#.utf8)])
        XCTAssertEqual(try a.renderChat([ChatMessage(role: "user", content: "u")]), "<s>[u]")
        let list = #"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D{{ messages|length }}"}]}"#
        let b = try Tokenizer(byteLevelBPE: Self.bpe, configFiles: ["tokenizer_config.json": Data(list.utf8)])
        XCTAssertEqual(try b.renderChat([ChatMessage(role: "user", content: "u")]), "D1")
    }
}
