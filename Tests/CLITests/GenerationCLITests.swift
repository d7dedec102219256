import Foundation
import MoETestSupport
import XCTest

/// tokenize, run and eval against the reference libraries' outputs.
final class GenerationCLITests: XCTestCase {
    private var tokenizerFixtures: URL { Fixtures.root.appendingPathComponent("tokenizer") }
    private var tinyGolden: URL { Fixtures.root.appendingPathComponent("tiny-moe") }

    /// `moepack tokenize` prints the sentencepiece library's ids line for line, for a BPE and a
    /// unigram model, on the hard cases and held-out lines of the tokenizer fixtures.
    func testTokenizeMatchesSentencePieceLineForLine() throws {
        for name in ["bpe_nfkc", "bpe_identity_bf", "unigram_nfkc_bf", "unigram_identity"] {
            let dir = try Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: dir) }
            try FileManager.default.copyItem(at: tokenizerFixtures.appendingPathComponent("\(name).model"),
                                             to: dir.appendingPathComponent("tokenizer.model"))
            let result = try runMoepack(["tokenize", dir.path, "--file", tokenizerFixtures.appendingPathComponent("inputs.txt").path])
            XCTAssertEqual(result.status, 0, result.stderr)
            let expected = try String(contentsOf: tokenizerFixtures.appendingPathComponent("\(name).ids.txt"), encoding: .utf8)
            XCTAssertEqual(result.stdout, expected, name)
        }
    }

    /// The built-in model's tokenizer on its held-out text and on the hard cases.
    func testTokenizeTinyModelMatchesSentencePiece() throws {
        let inputs = [
            (Fixtures.tinyModel.appendingPathComponent("heldout.txt"), "tiny_moe.ids.txt"),
            (tokenizerFixtures.appendingPathComponent("inputs.txt"), "tiny_moe_hard.ids.txt"),
        ]
        for (file, reference) in inputs {
            let result = try runMoepack(["tokenize", Fixtures.tinyModel.path, "--file", file.path])
            XCTAssertEqual(result.status, 0, result.stderr)
            let expected = try String(contentsOf: tokenizerFixtures.appendingPathComponent(reference), encoding: .utf8)
            XCTAssertEqual(result.stdout, expected, reference)
        }
    }

    private struct GenerateGolden: Decodable {
        struct Message: Decodable { let role, content: String }
        struct Case: Decodable {
            let text: String
            let add_bos: Bool
            let tokenizer_add_bos_token: Bool
            let prompt_ids: [Int]
            let output_text: String
            let messages: [Message]?
            let repetition_penalty: Double?
        }
        let cases: [Case]
    }

    /// The built-in model with its tokenizer_config.json saying add_bos_token true.
    private func tinyModelAddingBOS() throws -> URL {
        let dir = try Fixtures.temporaryDirectory().appendingPathComponent("tiny-moe-add-bos")
        try FileManager.default.copyItem(at: Fixtures.tinyModel, to: dir)
        let file = dir.appendingPathComponent("tokenizer_config.json")
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
        config["add_bos_token"] = true
        try JSONSerialization.data(withJSONObject: config).write(to: file)
        return dir
    }

    /// Greedy `moepack run` prints transformers' greedy continuation of the same prompt text,
    /// tokenized as transformers tokenizes it: no BOS with the tokenizer as shipped
    /// (add_bos_token false), BOS first where add_bos_token is true; with and without
    /// `--repetition-penalty`. Its prompts encode to the golden prompt ids.
    func testRunGreedyMatchesTransformersGenerate() throws {
        let golden = try JSONDecoder().decode(GenerateGolden.self,
                                              from: Data(contentsOf: tinyGolden.appendingPathComponent("generate.json")))
        let addingBOS = try tinyModelAddingBOS()
        defer { try? FileManager.default.removeItem(at: addingBOS.deletingLastPathComponent()) }
        XCTAssertEqual(Set(golden.cases.map(\.add_bos)), [true, false])
        for c in golden.cases {
            let model = c.tokenizer_add_bos_token ? addingBOS.path : Fixtures.tinyModel.path
            XCTAssertEqual(c.add_bos, c.tokenizer_add_bos_token && c.messages == nil)
            var arguments = ["run", model, "--max-tokens", "32", "--temperature", "0"]
            if let penalty = c.repetition_penalty { arguments += ["--repetition-penalty", String(penalty)] }
            if let messages = c.messages {
                let system = try XCTUnwrap(messages.first { $0.role == "system" }).content
                let user = try XCTUnwrap(messages.first { $0.role == "user" }).content
                arguments += ["--chat", "--system", system, "--prompt", user]
            } else {
                arguments += ["--prompt", c.text]
                let dir = try Fixtures.temporaryDirectory()
                defer { try? FileManager.default.removeItem(at: dir) }
                let file = dir.appendingPathComponent("prompt.txt")
                try Data((c.text + "\n").utf8).write(to: file)
                let ids = try runMoepack(["tokenize", model, "--file", file.path] + (c.add_bos ? ["--add-bos"] : []))
                XCTAssertEqual(ids.stdout, c.prompt_ids.map(String.init).joined(separator: " ") + "\n")
            }
            let result = try runMoepack(arguments)
            XCTAssertEqual(result.status, 0, result.stderr)
            XCTAssertTrue(result.stdout.hasSuffix("\n"))
            let text = String(result.stdout.dropLast())
            // The reference decode writes the end-of-sequence marker that run stops at, not prints.
            var expected = c.output_text
            for marker in ["<|end_of_sentence|>", "</s>"] where expected.hasSuffix(marker) {
                expected.removeLast(marker.count)
            }
            // The stream keeps the space before the first word that a decode of the answer alone drops.
            XCTAssertTrue(text == expected || text == " " + expected, "\(text.debugDescription) vs \(expected.debugDescription)")
            XCTAssertTrue(result.stderr.contains("tok/s"), result.stderr)
        }
        // Without sampling flags the model's generation_config.json (do_sample false) makes it greedy.
        let plain = try XCTUnwrap(golden.cases.first { !$0.tokenizer_add_bos_token && $0.messages == nil && $0.repetition_penalty == nil })
        let result = try runMoepack(["run", Fixtures.tinyModel.path, "--max-tokens", "32", "--prompt", plain.text])
        XCTAssertEqual(result.status, 0, result.stderr)
        let text = String(result.stdout.dropLast())
        XCTAssertTrue(text == plain.output_text || text == " " + plain.output_text, text.debugDescription)
        XCTAssertFalse(result.stderr.contains("seed"), "greedy, so no seed is printed: \(result.stderr)")
    }

    private struct PerplexityGolden: Decodable {
        struct Entry: Decodable { let total_nll: Double; let predicted_tokens: Int; let perplexity: Double }
        let total_tokens: Int
        let by_context: [String: Entry]
    }

    /// `moepack eval` on the f32 tiny model gives transformers' perplexity (same windows).
    func testEvalPerplexityMatchesTransformers() throws {
        let golden = try JSONDecoder().decode(PerplexityGolden.self,
                                              from: Data(contentsOf: tinyGolden.appendingPathComponent("perplexity.json")))
        let expected = try XCTUnwrap(golden.by_context["256"])
        let result = try runMoepack(["eval", Fixtures.tinyModel.path, "--data",
                                     Fixtures.tinyModel.appendingPathComponent("heldout.txt").path,
                                     "--context", "256", "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(report["tokens"] as? Int, golden.total_tokens)
        XCTAssertEqual(report["predictedTokens"] as? Int, expected.predicted_tokens)
        let perplexity = try XCTUnwrap(report["perplexity"] as? Double)
        XCTAssertEqual(perplexity, expected.perplexity, accuracy: expected.perplexity * 0.005)
        XCTAssertEqual(try XCTUnwrap(report["totalNLL"] as? Double), expected.total_nll, accuracy: expected.total_nll * 1e-4)
        XCTAssertNil(report["reference"])
        // No progress bar when stderr is not a terminal: only the pass's speed.
        let lines = result.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, result.stderr)
        XCTAssertTrue(lines.first?.hasPrefix("eval: 20881 tokens in ") ?? false, result.stderr)
        XCTAssertTrue(result.stderr.contains("GFLOP/s (OpenBLAS sgemm here: "), result.stderr)
    }

    /// `--save-reference` then `--reference REF`: the checkpoint against its own reference file,
    /// and the file refused for another text.
    func testEvalThroughAReferenceFile() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = try String(contentsOf: Fixtures.tinyModel.appendingPathComponent("heldout.txt"), encoding: .utf8)
        let data = dir.appendingPathComponent("a.txt"), other = dir.appendingPathComponent("b.txt")
        try String(text.prefix(3000)).write(to: data, atomically: true, encoding: .utf8)
        try String(text.dropFirst(3000).prefix(3000)).write(to: other, atomically: true, encoding: .utf8)
        let ref = dir.appendingPathComponent("a.mpkref").path
        let saved = try runMoepack(["eval", Fixtures.tinyModel.path, "--data", data.path, "--save-reference", ref, "--json"])
        XCTAssertEqual(saved.status, 0, saved.stderr)
        XCTAssertTrue(saved.stderr.contains("reference → \(ref)"), saved.stderr)
        let scored = try runMoepack(["eval", Fixtures.tinyModel.path, "--data", data.path, "--reference", ref, "--json"])
        XCTAssertEqual(scored.status, 0, scored.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(scored.stdout.utf8)) as? [String: Any])
        let comparison = try XCTUnwrap(report["reference"] as? [String: Any])
        XCTAssertEqual(comparison["top1Agreement"] as? Double, 1)
        XCTAssertEqual(try XCTUnwrap(comparison["meanKLDivergence"] as? Double), 0, accuracy: 1e-5)
        let refused = try runMoepack(["eval", Fixtures.tinyModel.path, "--data", other.path, "--reference", ref])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("was made from a different text (a.txt"), refused.stderr)
        let both = try runMoepack(["eval", Fixtures.tinyModel.path, "--data", data.path, "--reference", ref, "--save-reference", ref])
        XCTAssertNotEqual(both.status, 0)
    }

    func testBadInputGivesOneClearLine() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let empty = dir.appendingPathComponent("empty.txt")
        try Data().write(to: empty)
        let model = Fixtures.tinyModel.path
        let cases: [([String], String)] = [
            (["eval", model, "--data", dir.appendingPathComponent("missing.txt").path], "does not exist"),
            (["eval", model, "--data", empty.path], "perplexity needs at least 2"),
            (["eval", model, "--data", Fixtures.tinyModel.appendingPathComponent("heldout.txt").path, "--context", "100000"],
             "larger than the model's limit"),
            (["run", model, "--prompt", "a", "--top-p", "0"], "top-p"),
            (["run", dir.path, "--prompt", "a"], "config.json"),
            (["tokenize", dir.path, "--file", empty.path], "tokenizer.model"),
        ]
        for (arguments, message) in cases {
            let result = try runMoepack(arguments)
            XCTAssertNotEqual(result.status, 0, arguments.joined(separator: " "))
            XCTAssertTrue(result.stderr.contains(message), "\(arguments): \(result.stderr)")
        }
    }
}
