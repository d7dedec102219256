import Foundation
import MoEFormat
import MoETestSupport
@testable import MoERuntime
import XCTest

/// Broken weights must give an error where the logits come out, not NaN text with exit code 0.
final class NonFiniteLogitsTests: XCTestCase {
    /// A copy of a fixture checkpoint with one weight of the final norm set to `value`.
    private func checkpoint(finalNormValue value: Float) throws -> URL {
        let directory = try Fixtures.temporaryDirectory()
        let source = Fixtures.checkpoint("moe_basic")
        for name in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(at: source.appendingPathComponent(name), to: directory.appendingPathComponent(name))
        }
        let file = directory.appendingPathComponent("model.safetensors")
        let info = try XCTUnwrap(SafeTensorsFile(path: file.path).tensors["model.norm.weight"])
        XCTAssertEqual(info.dtype, .f32)
        var data = try Data(contentsOf: file)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { data.replaceSubrange(info.byteRange.lowerBound..<(info.byteRange.lowerBound + 4), with: $0) }
        try data.write(to: file)
        return directory
    }

    func testNaNWeightsAreReportedNotSampled() throws {
        for value in [Float.nan, .infinity] {
            let directory = try checkpoint(finalNormValue: value)
            defer { try? FileManager.default.removeItem(at: directory) }
            let model = try ModelLoader.model(at: directory.path)
            XCTAssertThrowsError(try model.logits([3, 4, 5])) { error in
                XCTAssertTrue("\(error)".contains("non-finite logit"), "\(error)")
            }
            let caches = [model.makeCache(capacity: 4), model.makeCache(capacity: 4)]
            XCTAssertThrowsError(try model.decodeBatch(tokens: [3, 4], caches: caches)) { error in
                XCTAssertTrue("\(error)".contains("non-finite logit"), "\(error)")
            }
        }
        // The untouched model still runs.
        XCTAssertNoThrow(try Fixtures.model("moe_basic").logits([3, 4, 5]))
    }
}
