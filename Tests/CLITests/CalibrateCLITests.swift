import Foundation
import MoEFormat
import MoETestSupport
import XCTest

final class CalibrateCLITests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// calibrate the tiny model, write stats and a report, then prune a bundle with them.
    func testCalibrateReportAndPrunedConvert() throws {
        let model = Fixtures.tinyModel.path
        let stats = dir.appendingPathComponent("stats.json").path
        let report = dir.appendingPathComponent("usage.html").path
        let r = try runMoepack(["calibrate", model, "--data", Fixtures.tinyModel.appendingPathComponent("calibration.txt").path,
                                "--output", stats, "--max-tokens", "512", "--context", "128", "--report", report])
        XCTAssertEqual(r.status, 0, r.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: stats))) as! [String: Any]
        XCTAssertEqual((object["data"] as! [String: Any])["tokens"] as? Int, 512)
        XCTAssertEqual((object["data"] as! [String: Any])["windows"] as? Int, 4)
        let html = try String(contentsOfFile: report, encoding: .utf8)
        XCTAssertTrue(html.contains("<svg") && html.contains("layer 3"))
        // 0.25 of 16 experts in 3 layers: 12 crossed-out cells.
        XCTAssertEqual(html.components(separatedBy: ", pruned</title>").count - 1, 12)

        let bundle = dir.appendingPathComponent("p.mpk").path
        let c = try runMoepack(["convert", model, "--profile", "wint4-prune25", "--calibration", stats, "--output", bundle])
        XCTAssertEqual(c.status, 0, c.stderr)
        // Stats of the tiny model do not apply to another model.
        let other = try runMoepack(["convert", Fixtures.checkpoint("moe_basic").path, "--profile", "wint4-prune25",
                                    "--calibration", stats, "--output", dir.appendingPathComponent("o.mpk").path])
        XCTAssertNotEqual(other.status, 0)
        XCTAssertTrue(other.stderr.contains("measured on a different model"), other.stderr)
    }

    /// --calibration turns on calibration-aware rounding for any profile; --rounding nearest turns it off.
    func testCalibratedRoundingIsTheDefaultWithCalibration() throws {
        let model = Fixtures.tinyModel.path
        let stats = dir.appendingPathComponent("stats.json").path
        let r = try runMoepack(["calibrate", model, "--data", Fixtures.tinyModel.appendingPathComponent("calibration.txt").path,
                                "--output", stats, "--max-tokens", "512", "--context", "128"])
        XCTAssertEqual(r.status, 0, r.stderr)
        var manifests: [String: BundleManifest] = [:]
        for (name, extra) in [("calibrated", ["--calibration", stats]), ("nearest", ["--calibration", stats, "--rounding", "nearest"]),
                              ("plain", [])] {
            let out = dir.appendingPathComponent("\(name).mpk").path
            let c = try runMoepack(["convert", model, "--profile", "wint4", "--output", out] + extra)
            XCTAssertEqual(c.status, 0, c.stderr)
            manifests[name] = try BundleFile(path: out).manifest
        }
        XCTAssertEqual(manifests["calibrated"]?.provenance.parameters["rounding"], "calibrated")
        XCTAssertEqual(manifests["nearest"]?.provenance.parameters["rounding"], "nearest")
        XCTAssertEqual(manifests["plain"]?.provenance.parameters["rounding"], "nearest")
        XCTAssertTrue(try XCTUnwrap(manifests["calibrated"]).tensors.contains { $0.tensorClass == .routedExperts && $0.format == .q4g32 })
        let bytes = { (name: String) in try Data(contentsOf: self.dir.appendingPathComponent("\(name).mpk")) }
        XCTAssertNotEqual(try bytes("calibrated"), try bytes("nearest"))

        let bad = try runMoepack(["convert", model, "--profile", "wint4", "--rounding", "calibrated",
                                  "--output", dir.appendingPathComponent("x.mpk").path])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("needs --calibration"), bad.stderr)
    }

    /// --rounding gptq fits on --data and says so in the provenance; without --data it is an error.
    func testGPTQRoundingNeedsTheTextAndIsRecorded() throws {
        let model = Fixtures.tinyModel.path, text = Fixtures.tinyModel.appendingPathComponent("calibration.txt").path
        let out = dir.appendingPathComponent("g.mpk").path
        let missing = try runMoepack(["convert", model, "--profile", "wint4-all", "--rounding", "gptq", "--output", out])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("--rounding gptq needs the calibration text (--data FILE)"), missing.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        let c = try runMoepack(["convert", model, "--profile", "wint4-all", "--rounding", "gptq", "--data", text,
                                "--gptq-tokens", "4096", "--output", out])
        XCTAssertEqual(c.status, 0, c.stderr)
        let p = try BundleFile(path: out).manifest.provenance.parameters
        XCTAssertEqual(p["rounding"], "gptq")
        XCTAssertEqual(p["gptq_tokens"], "4096")
        // "K of N": most rows of the 2-D weights of the decoder layers keep the compensated codes
        let rows = try XCTUnwrap(p["gptq_rows"]).split(separator: " ").compactMap { Int($0) }
        XCTAssertEqual(rows.count, 2)
        XCTAssertGreaterThan(rows[0], rows[1] / 2, "\(p)")
        let nearest = dir.appendingPathComponent("n.mpk").path
        XCTAssertEqual(try runMoepack(["convert", model, "--profile", "wint4-all", "--output", nearest]).status, 0)
        XCTAssertNotEqual(try Data(contentsOf: URL(fileURLWithPath: out)), try Data(contentsOf: URL(fileURLWithPath: nearest)))
    }

    func testEmptyDataIsAClearError() throws {
        let empty = dir.appendingPathComponent("empty.txt")
        try "\n \n".write(to: empty, atomically: true, encoding: .utf8)
        let r = try runMoepack(["calibrate", Fixtures.tinyModel.path, "--data", empty.path,
                                "--output", dir.appendingPathComponent("s.json").path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("calibration file empty.txt is empty"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("s.json").path))
    }
}
