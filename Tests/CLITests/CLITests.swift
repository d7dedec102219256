import Foundation
import MoEFormat
import MoETestSupport
import XCTest

/// Runs the built `moepack` executable as a user would.
struct CLIResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

func runMoepack(_ arguments: [String]) throws -> CLIResult {
    let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        .appendingPathComponent("moepack")
    let process = Process()
    process.executableURL = binary.lastPathComponent == "moepack" && FileManager.default.fileExists(atPath: binary.path)
        ? binary
        : productsDirectory().appendingPathComponent("moepack")
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CLIResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                     stderr: String(decoding: errData, as: UTF8.self))
}

/// The build products folder (.build/debug) that holds both the test bundle and `moepack`.
func productsDirectory() -> URL {
    for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
        return bundle.bundleURL.deletingLastPathComponent()
    }
    return Bundle.main.bundleURL
}

final class InspectAndLogitsCLITests: XCTestCase {
    func testLogitsWritesGoldenNpy() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let name = "moe_shared2_bias"
        let sequence = try Fixtures.sequences(name)[2]
        let output = dir.appendingPathComponent("out.npy")
        let result = try runMoepack(["logits", Fixtures.checkpoint(name).path,
                                     "--tokens", sequence.map(String.init).joined(separator: ","),
                                     "--output", output.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let written = try Npy.decode(Data(contentsOf: output))
        let golden = try Fixtures.goldenLogits(name, 2)
        XCTAssertEqual(written.shape, golden.shape)
        XCTAssertLessThanOrEqual(relativeMaxError(written.values, golden.values), 1e-4)
    }

    func testInspectJSON() throws {
        let result = try runMoepack(["inspect", Fixtures.checkpoint("moe_sharded").path, "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(object["architecture"] as? String, "Ernie4_5_MoeForCausalLM")
        XCTAssertEqual(object["shards"] as? Int, 3)
        // Totals against the tensors actually stored in the shards.
        let checkpoint = try Checkpoint(directory: Fixtures.checkpoint("moe_sharded"))
        let stored = try checkpoint.tensorNames.reduce(0) { $0 + (try checkpoint.info($1).elementCount) }
        let routed = try checkpoint.tensorNames.filter { $0.contains(".mlp.experts.") }
            .reduce(0) { $0 + (try checkpoint.info($1).elementCount) }
        let c = checkpoint.config
        XCTAssertEqual(object["parametersTotal"] as? Int, stored)
        XCTAssertEqual(object["parametersActivePerToken"] as? Int, stored - routed * (c.moeNumExperts - c.moeK) / c.moeNumExperts)
        let dtypes = try XCTUnwrap(object["dtypes"] as? [String: Int])
        XCTAssertEqual(Set(dtypes.keys), ["F32", "F16"])
    }

    func testInspectText() throws {
        let result = try runMoepack(["inspect", Fixtures.checkpoint("dense").path])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("architecture Ernie4_5ForCausalLM"))
        XCTAssertTrue(result.stdout.contains("layers       DD"))
    }

    func testBadInputIsOneClearLineAndNonZeroExit() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cases: [([String], String)] = [
            (["inspect", dir.appendingPathComponent("nope").path], "is not a checkpoint directory"),
            (["inspect", dir.path], "has no config.json"),
            (["logits", Fixtures.checkpoint("moe_basic").path, "--tokens", "1,x", "--output", dir.appendingPathComponent("a.npy").path], "'x' is not a token id"),
            (["logits", Fixtures.checkpoint("moe_basic").path, "--tokens", "1,999", "--output", dir.appendingPathComponent("b.npy").path], "outside the vocabulary"),
        ]
        for (arguments, expected) in cases {
            let result = try runMoepack(arguments)
            XCTAssertNotEqual(result.status, 0, "\(arguments)")
            XCTAssertTrue(result.stderr.contains(expected), "\(arguments): \(result.stderr)")
            XCTAssertFalse(result.stderr.contains("Fatal error"), "\(arguments) crashed")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("b.npy").path))
    }
}
