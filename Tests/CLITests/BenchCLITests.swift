import Foundation
import MoETestSupport
import XCTest

/// `moepack bench --json` on the tiny model: the report's shape, not its speed (speed is what
/// the command measures; tests never assert it).
final class BenchCLITests: XCTestCase {
    func testJSONReportPairsEveryBatchedRunWithOneSequence() throws {
        let result = try runMoepack(["bench", Fixtures.tinyModel.path, "--runs", "3", "--prompt-tokens", "8",
                                     "--gen-tokens", "4", "--batch", "2", "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let runs = try XCTUnwrap(report["batchSpeedupRuns"] as? [Double])
        XCTAssertEqual(runs.count, 3)
        XCTAssertTrue(runs.allSatisfy { $0 > 0 && $0.isFinite })
        // The reported speed-up is the median of the paired runs.
        XCTAssertEqual(try XCTUnwrap(report["batchSpeedup"] as? Double), runs.sorted()[1])
        XCTAssertEqual(report["batchStreams"] as? Int, 2)
        XCTAssertEqual(report["kvCachePrecision"] as? String, "f32", "the tiny checkpoint runs at full precision")
        XCTAssertEqual((report["decodeTokensPerSecondRuns"] as? [Double])?.count, 3)
        // The figures name their machine: the processor as /proc/cpuinfo calls it, and the path.
        let cpu = try XCTUnwrap(report["cpu"] as? String)
        if let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
           let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
           let name = line.split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) {
            XCTAssertTrue(cpu.hasPrefix(name), "\(cpu) does not start with \(name)")
        }
        XCTAssertTrue(["scalar", "avx2", "avx512", "neon"].contains(report["kernelPath"] as? String ?? ""),
                      "\(report["kernelPath"] ?? "none")")
        // Part of decoding runs inside the kernel pool's jobs (the pool's clock is wired up) and
        // part outside them.
        for key in ["decodeSerialFraction", "batchSerialFraction"] {
            let share = try XCTUnwrap(report[key] as? Double, key)
            XCTAssertTrue(share > 0 && share < 1, "\(key) \(share)")
        }
    }

    func testBatchOfOneSkipsTheBatchedMeasurement() throws {
        let result = try runMoepack(["bench", Fixtures.tinyModel.path, "--runs", "1", "--prompt-tokens", "8",
                                     "--gen-tokens", "2", "--batch", "1", "--kv-cache", "f16", "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        XCTAssertNil(report["batchSpeedup"] as? Double)
        XCTAssertEqual(report["batchSpeedupRuns"] as? [Double], [])
        XCTAssertNil(report["batchSerialFraction"] as? Double)
        XCTAssertEqual(report["kvCachePrecision"] as? String, "f16", "--kv-cache overrides the model's choice")
    }

    func testUnknownCachePrecisionIsAnError() throws {
        let result = try runMoepack(["bench", Fixtures.tinyModel.path, "--kv-cache", "f64"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("kv-cache"), result.stderr)
        XCTAssertTrue(result.stdout.isEmpty)
    }
}
