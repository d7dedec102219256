import Foundation
import MoETestSupport
import XCTest

/// The real `openai` Python client (from PyPI; tools/setup.sh installs it into .venv) against
/// `moepack serve` on the tiny model, through tools/openai_client_check.py: models list,
/// completion and chat completion with stream false and true, streamed text equal to the plain
/// answer, usage counts, greedy output equal to `moepack run`'s, 404 and 400 errors as the
/// client's exception types, and exit status 0 after SIGTERM.
final class OpenAIClientTests: XCTestCase {
    func testOpenAIClientAgainstServe() throws {
        try check(model: nil)
    }

    /// The same checks on a wint4 bundle of a small Qwen3-MoE and a small Mixtral (random
    /// weights, the built-in tokenizer), so the server answers the client for every family.
    func testOpenAIClientAgainstEveryFamily() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let shared: [String: Any] = ["hidden_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
                                     "num_key_value_heads": 2, "vocab_size": 3072, "max_position_embeddings": 1024,
                                     "rope_theta": 1000000.0]
        let families: [String: [String: Any]] = [
            "qwen3": ["architectures": ["Qwen3MoeForCausalLM"], "head_dim": 48, "intermediate_size": 256,
                      "moe_intermediate_size": 64, "num_experts": 16, "num_experts_per_tok": 4, "norm_topk_prob": true,
                      "mlp_only_layers": [0]],
            "mixtral": ["architectures": ["MixtralForCausalLM"], "intermediate_size": 96, "num_local_experts": 8,
                        "num_experts_per_tok": 2, "sliding_window": 128],
        ]
        for (name, fields) in families.sorted(by: { $0.key < $1.key }) {
            let config = dir.appendingPathComponent("\(name).json"), checkpoint = dir.appendingPathComponent(name)
            let bundle = dir.appendingPathComponent("\(name).mpk")
            try JSONSerialization.data(withJSONObject: shared.merging(fields) { $1 }).write(to: config)
            for arguments in [["synth", "--config", config.path, "--output", checkpoint.path],
                              ["convert", checkpoint.path, "--profile", "wint4", "--output", bundle.path]] {
                let result = try runMoepack(arguments)
                XCTAssertEqual(result.status, 0, "\(name): \(result.stderr)")
            }
            try check(model: bundle.path)
        }
    }

    private func check(model: String?) throws {
        let root = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()
        let python = root.appendingPathComponent(".venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: python.path) else {
            return XCTFail("\(python.path) is missing: run tools/setup.sh, which installs the openai client there")
        }
        let process = Process()
        process.executableURL = python
        process.arguments = [root.appendingPathComponent("tools/openai_client_check.py").path,
                             "--moepack", moepackBinary().path] + (model.map { ["--model", $0] } ?? [])
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, text)
        XCTAssertTrue(text.contains("all checks passed"), text)
    }
}
