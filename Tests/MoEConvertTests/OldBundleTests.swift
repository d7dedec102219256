import Foundation
import MoEFormat
import MoEKernels
import MoERuntime
import MoETestSupport
import XCTest
@testable import MoEConvert

/// A bundle written before the 16-level int4 formats (Tests/Fixtures/bundles, see its README):
/// its int4g32 tensors must keep decoding by the 15-level rule they were made with.
final class OldBundleTests: XCTestCase {
    let url = Fixtures.root.appendingPathComponent("bundles/moe_shared2_bias-int4g32-v1.mpk")

    func testInt4g32TensorsDecodeByTheFifteenLevelRule() throws {
        let bundle = try BundleFile(path: url.path)
        let int4 = bundle.manifest.tensors.filter { $0.format == .int4g32 }
        XCTAssertEqual(int4.count, 52)
        let checkpoint = try Checkpoint(directory: Fixtures.checkpoint("moe_shared2_bias"))
        let reader = TensorReader(checkpoint: checkpoint)
        var scratch: [UInt8] = []
        for t in int4 {
            let (rows, cols) = (t.shape[0], t.shape[1])
            var w = [Float](repeating: 0, count: rows * cols)
            try w.withUnsafeMutableBufferPointer { try reader.read(t.name, start: 0, count: rows * cols, into: $0.baseAddress!, scratch: &scratch) }
            let stored = Array(bundle.storedBytes(t.payload))
            // The rule is unchanged: today's int4g32 quantizer writes the same bytes.
            XCTAssertEqual(try w.withUnsafeBufferPointer { try QuantizedMatrix.quantize($0, rows: rows, cols: cols, format: .int4g32) },
                           stored, t.name)
            let deq = try QuantizedMatrix(copying: stored, rows: rows, cols: cols, format: .int4g32).dequantize()
            for g in 0..<(rows * cols / 32) {
                let o = g * 18
                let scale = moe_f16_to_f32(UInt16(stored[o]) | UInt16(stored[o + 1]) << 8)
                let amax = w[(32 * g)..<(32 * g + 32)].map(abs).max()!
                XCTAssertGreaterThanOrEqual(scale, amax / 7, "\(t.name) group \(g): scale covers max|w| / 7")
                XCTAssertTrue(stored[(o + 2)..<(o + 18)].allSatisfy { $0 & 0xF != 0 && $0 >> 4 != 0 }, "nibble 0 (-8) is never used")
                for j in (32 * g)..<(32 * g + 32) { XCTAssertLessThanOrEqual(abs(w[j] - deq[j]), scale / 2 * (1 + 1e-6), t.name) }
            }
        }
    }

    func testItRunsAsItDidWhenWritten() throws {
        let sequence = try Fixtures.sequences("moe_shared2_bias")[2]
        let old = try ModelLoader.model(at: url.path).logits(sequence)
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bundle = try BundleFile(path: url.path)
        let profile = try Profile(toml: bundle.manifest.profile.toml, origin: "the bundle's profile")
        let fresh = dir.appendingPathComponent("fresh.mpk").path
        try Converter.convert(checkpoint: Fixtures.checkpoint("moe_shared2_bias").path, output: fresh, options: ConvertOptions(profile: profile))
        XCTAssertEqual(old, try ModelLoader.model(at: fresh).logits(sequence), "same weights, same kernels, same logits")
    }
}
