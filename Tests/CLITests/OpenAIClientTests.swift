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
        let root = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()
        let python = root.appendingPathComponent(".venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: python.path) else {
            return XCTFail("\(python.path) is missing: run tools/setup.sh, which installs the openai client there")
        }
        let process = Process()
        process.executableURL = python
        process.arguments = [root.appendingPathComponent("tools/openai_client_check.py").path,
                             "--moepack", moepackBinary().path]
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
