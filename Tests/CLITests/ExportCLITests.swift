import Foundation
import MoETestSupport
import XCTest

/// `moepack export --to gguf` as a user runs it, and `inspect` of the file it writes.
final class ExportCLITests: XCTestCase {
    func testExportThenInspectAndRefuseAnExistingOutput() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bundle = dir.appendingPathComponent("t.mpk").path, gguf = dir.appendingPathComponent("t.gguf").path
        XCTAssertEqual(try runMoepack(["convert", Fixtures.tinyModel.path, "--profile", "wint4-all", "--output", bundle]).status, 0)
        let export = try runMoepack(["export", bundle, "--to", "gguf", "--output", gguf])
        XCTAssertEqual(export.status, 0, export.stderr)
        XCTAssertTrue(export.stdout.contains("architecture ernie4_5-moe"), export.stdout)
        XCTAssertTrue(export.stdout.contains("int8 -> Q8_0 error"), export.stdout)
        let inspect = try runMoepack(["inspect", gguf])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        XCTAssertTrue(inspect.stdout.contains("GGUF v3, architecture ernie4_5-moe, 53 tensors"), inspect.stdout)
        XCTAssertTrue(inspect.stdout.contains("ernie4_5-moe.expert_shared_feed_forward_length = 128"), inspect.stdout)
        let again = try runMoepack(["export", bundle, "--to", "gguf", "--output", gguf])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.stderr.contains("--force"), again.stderr)
        let bad = try runMoepack(["export", gguf, "--to", "gguf", "--output", dir.appendingPathComponent("u.gguf").path])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("u.gguf").path))
    }
}
