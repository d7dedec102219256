import Foundation
import MoETestSupport
import XCTest

/// docs/swift-api.md's example compiles (it is SwiftAPIExample.swift), runs, and matches the document.
final class SwiftAPIExampleTests: XCTestCase {
    static let repository = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()

    func testDocumentShowsTheCompiledExample() throws {
        let document = try String(contentsOf: Self.repository.appendingPathComponent("docs/swift-api.md"), encoding: .utf8)
        let source = try String(contentsOf: Self.repository.appendingPathComponent("Tests/MoEServeTests/SwiftAPIExample.swift"),
                                encoding: .utf8)
        let example = try XCTUnwrap(source.components(separatedBy: "// BEGIN EXAMPLE\n").last?
            .components(separatedBy: "// END EXAMPLE").first)
        let block = try XCTUnwrap(document.components(separatedBy: "```swift\n").dropFirst().first?
            .components(separatedBy: "```").first)
        XCTAssertEqual(block, example, "docs/swift-api.md's first swift block differs from SwiftAPIExample.swift")
    }

    func testExampleRunsOnTheTinyModel() async throws {
        let path = Fixtures.tinyModel.path
        guard FileManager.default.fileExists(atPath: path + "/tokenizer.model") else {
            throw XCTSkip("the tiny model is not in this tree")
        }
        let result = try await swiftAPIExample(modelPath: path)
        XCTAssertFalse(result.answer.isEmpty)
        XCTAssertFalse(result.answer.contains("\nUser:"))
        XCTAssertEqual(result.tokensBeforeStop, 5)
    }
}
