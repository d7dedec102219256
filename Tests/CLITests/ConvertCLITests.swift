import Foundation
import MoEFormat
import MoETestSupport
import XCTest

final class ConvertCLITests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testConvertInspectAndLogitsOnABundle() throws {
        let checkpoint = Fixtures.checkpoint("moe_shared2_bias")
        let bundle = dir.appendingPathComponent("m.mpk").path
        let convert = try runMoepack(["convert", checkpoint.path, "--profile", "wint8", "--output", bundle, "--json"])
        XCTAssertEqual(convert.status, 0, convert.stderr)
        let summary = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(convert.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(summary["profile"] as? String, "wint8")
        XCTAssertEqual(summary["kind"] as? String, "bundle")

        let inspect = try runMoepack(["inspect", bundle, "--verify"])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        XCTAssertTrue(inspect.stdout.contains("payload checksums OK"), inspect.stdout)
        XCTAssertTrue(inspect.stdout.contains("routed_experts   int8"), inspect.stdout)

        let sequence = try Fixtures.sequences("moe_shared2_bias")[1]
        let npy = dir.appendingPathComponent("l.npy").path
        let logits = try runMoepack(["logits", bundle, "--tokens", sequence.map(String.init).joined(separator: ","), "--output", npy])
        XCTAssertEqual(logits.status, 0, logits.stderr)
        let written = try Npy.decode(Data(contentsOf: URL(fileURLWithPath: npy)))
        XCTAssertEqual(written.shape, try Fixtures.goldenLogits("moe_shared2_bias", 1).shape)
    }

    func testDamagedBundleFailsWithAMessage() throws {
        let bundle = dir.appendingPathComponent("m.mpk")
        XCTAssertEqual(try runMoepack(["convert", Fixtures.checkpoint("moe_basic").path, "--profile", "f32", "--output", bundle.path]).status, 0)
        var data = try Data(contentsOf: bundle)
        data[data.count / 2] ^= 0xFF // inside a payload
        try data.write(to: bundle)
        let inspect = try runMoepack(["inspect", bundle.path, "--verify"])
        XCTAssertNotEqual(inspect.status, 0)
        XCTAssertTrue(inspect.stderr.contains("checksum mismatch in tensor"), inspect.stderr)
        let logits = try runMoepack(["logits", bundle.path, "--tokens", "1,2", "--output", dir.appendingPathComponent("x.npy").path])
        XCTAssertNotEqual(logits.status, 0)
        XCTAssertTrue(logits.stderr.contains("checksum mismatch in tensor"), logits.stderr)

        try Data(data.prefix(1000)).write(to: bundle)
        let truncated = try runMoepack(["inspect", bundle.path])
        XCTAssertNotEqual(truncated.status, 0)
        XCTAssertTrue(truncated.stderr.contains("is truncated"), truncated.stderr)
    }

    func testUnknownProfileKeyIsNamed() throws {
        let profile = dir.appendingPathComponent("p.toml")
        try "name = \"x\"\nstages = [\"quantize\", \"pack\"]\nsped = 1\n".write(to: profile, atomically: true, encoding: .utf8)
        let result = try runMoepack(["convert", Fixtures.checkpoint("moe_basic").path, "--profile", profile.path,
                                     "--output", dir.appendingPathComponent("o.mpk").path])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("unknown key \"sped\""), result.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("o.mpk").path))
    }

    /// config.json of a 2-layer ERNIE 4.5 MoE (dense first layer, 8 experts top-2, head_dim 64,
    /// tied embeddings) in the test folder, for `synth --config`.
    private func writeMoEConfig(hidden: Int, heads: Int, kvHeads: Int, intermediate: Int, expertWidth: Int,
                                sharedExperts: Int, vocab: Int) throws -> URL {
        let config: [String: Any] = [
            "architectures": ["Ernie4_5_MoeForCausalLM"], "model_type": "ernie4_5_moe", "hidden_size": hidden,
            "num_hidden_layers": 2, "num_attention_heads": heads, "num_key_value_heads": kvHeads, "head_dim": 64,
            "intermediate_size": intermediate, "moe_intermediate_size": expertWidth, "moe_num_experts": 8, "moe_k": 2,
            "moe_num_shared_experts": sharedExperts, "moe_layer_start_index": 1, "moe_layer_end_index": 1,
            "vocab_size": vocab, "tie_word_embeddings": true, "use_bias": false, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
        ]
        let url = dir.appendingPathComponent("config.json")
        try JSONSerialization.data(withJSONObject: config).write(to: url)
        return url
    }

    /// `--layers N` keeps a preset's real per-layer shapes with fewer layers, and a checkpoint
    /// that cannot fit the disk is refused before anything is written.
    func testSynthKeepsRealShapesWithFewerLayersAndChecksTheDisk() throws {
        let full = try runMoepack(["synth", "--preset", "ernie-4.5-21b-a3b", "--dry-run"])
        let cut = try runMoepack(["synth", "--preset", "ernie-4.5-21b-a3b", "--layers", "12", "--dry-run"])
        XCTAssertEqual(full.status, 0, full.stderr)
        XCTAssertEqual(cut.status, 0, cut.stderr)
        XCTAssertNotEqual(full.stdout, cut.stdout)
        let checkpoint = dir.appendingPathComponent("tiny2")
        XCTAssertEqual(try runMoepack(["synth", "--preset", "tiny", "--layers", "2", "--output", checkpoint.path]).status, 0)
        let summary = try runMoepack(["inspect", checkpoint.path, "--json"])
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(summary.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(json["layers"] as? Int, 2)
        XCTAssertEqual(json["hiddenSize"] as? Int, 64)
        XCTAssertEqual((json["layerKinds"] as? [[String: Any]])?.map { $0["kind"] as? String }, ["dense", "moe"])

        let huge: [String: Any] = ["architectures": ["Ernie4_5ForCausalLM"], "hidden_size": 65536, "num_hidden_layers": 1024,
                                   "num_attention_heads": 512, "num_key_value_heads": 64, "head_dim": 128,
                                   "intermediate_size": 262144, "vocab_size": 1 << 20]
        let url = dir.appendingPathComponent("huge.json")
        try JSONSerialization.data(withJSONObject: huge).write(to: url)
        let refused = try runMoepack(["synth", "--config", url.path, "--output", dir.appendingPathComponent("huge").path])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("on disk but") && refused.stderr.contains("--layers"), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("huge").path))
        XCTAssertNotEqual(try runMoepack(["synth", "--preset", "tiny", "--layers", "9", "--dry-run"]).status, 0)
    }

    /// `synth --dry-run` plans each shipped profile's bundle size from the shapes alone; the
    /// bundles `convert` then writes hold that many payload bytes (before zstd).
    func testDryRunPlansTheBundleSizesConvertWrites() throws {
        let configURL = try writeMoEConfig(hidden: 128, heads: 2, kvHeads: 1, intermediate: 256, expertWidth: 64,
                                           sharedExperts: 1, vocab: 512)
        let plan = try runMoepack(["synth", "--config", configURL.path, "--dry-run"])
        XCTAssertEqual(plan.status, 0, plan.stderr)
        let checkpoint = dir.appendingPathComponent("ckpt")
        XCTAssertEqual(try runMoepack(["synth", "--config", configURL.path, "--output", checkpoint.path]).status, 0)
        for profile in ["wint8", "wint4", "wint4-all"] {
            let line = try XCTUnwrap(plan.stdout.split(separator: "\n").first { $0.split(separator: " ").first == Substring(profile) },
                                     plan.stdout)
            // "  wint4           343.8 KiB              229.1 KiB": the first size is the bundle's.
            let fields = line.split(separator: " ")
            let units: [Substring: Double] = ["B": 1, "KiB": 1024, "MiB": 1_048_576, "GiB": 1_073_741_824]
            let planned = try XCTUnwrap(Double(fields[1])) * XCTUnwrap(units[fields[2]])
            let bundle = dir.appendingPathComponent("\(profile).mpk").path
            let convert = try runMoepack(["convert", checkpoint.path, "--profile", profile, "--output", bundle])
            XCTAssertEqual(convert.status, 0, convert.stderr)
            let inspect = try runMoepack(["inspect", bundle, "--json"])
            let summary = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
            let rows = try XCTUnwrap(summary["byClassAndFormat"] as? [[String: Any]])
            let written = rows.reduce(0.0) { $0 + Double($1["bytes"] as? Int ?? 0) }
            XCTAssertGreaterThan(written, 0)
            XCTAssertEqual(planned, written, accuracy: written * 0.005, "\(profile): \(line)")
        }
    }

    /// SIGKILL in the middle of a conversion leaves nothing at the output path. A slow zstd
    /// level keeps the conversion running long enough to be caught midway.
    func testKilledConvertLeavesNoOutput() throws {
        let configURL = try writeMoEConfig(hidden: 256, heads: 4, kvHeads: 2, intermediate: 1024, expertWidth: 512,
                                           sharedExperts: 0, vocab: 16384)
        let checkpoint = dir.appendingPathComponent("ckpt")
        let synth = try runMoepack(["synth", "--config", configURL.path, "--output", checkpoint.path])
        XCTAssertEqual(synth.status, 0, synth.stderr)
        let profile = dir.appendingPathComponent("slow.toml")
        try ShippedProfileText.wint8.replacingOccurrences(of: "zstd_level = 3", with: "zstd_level = 19")
            .write(to: profile, atomically: true, encoding: .utf8)

        let output = dir.appendingPathComponent("out.mpk")
        let process = Process()
        process.executableURL = moepackBinary()
        process.arguments = ["convert", checkpoint.path, "--profile", profile.path, "--output", output.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let temporary = dir.appendingPathComponent(".out.mpk.partial-\(process.processIdentifier)")
        // Wait until the temporary bundle exists (conversion under way), give it a moment to
        // write payloads, then kill.
        let deadline = Date().addingTimeInterval(60)
        while process.isRunning, Date() < deadline, !FileManager.default.fileExists(atPath: temporary.path) { usleep(2000) }
        usleep(500_000)
        XCTAssertTrue(process.isRunning, "conversion finished before it could be interrupted; make the checkpoint larger")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .uncaughtSignal)
        XCTAssertFalse(FileManager.default.fileExists(atPath: output.path), "a killed convert left a file at the output path")
        XCTAssertTrue(FileManager.default.fileExists(atPath: temporary.path), "the partial file lives under its temporary name")
    }
}

/// The wint8 profile text (the CLI tests do not link MoEConvert).
enum ShippedProfileText {
    static let wint8 = (try? String(contentsOf: Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("profiles/wint8.toml"), encoding: .utf8)) ?? ""
}

func moepackBinary() -> URL {
    let sibling = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("moepack")
    return FileManager.default.fileExists(atPath: sibling.path) ? sibling : productsDirectory().appendingPathComponent("moepack")
}
