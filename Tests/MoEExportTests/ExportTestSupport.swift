import Foundation
import MoEConvert
import MoEFormat
import MoEKernels
import MoETestSupport
import XCTest

/// Keeps the even-numbered experts of every MoE layer: a pruned bundle with the same count
/// per layer, so both export modes apply.
struct KeepEvenExperts: PruneStage {
    func keptExperts(checkpoint: Checkpoint, settings: PruneSettings) throws -> [Int: [Int]] {
        let c = checkpoint.config
        return Dictionary(uniqueKeysWithValues: c.moeLayers.map { ($0, Array(stride(from: 0, to: c.moeNumExperts, by: 2))) })
    }
    var provenance: [String: String] { ["prune_test": "keep-even"] }
}

/// A test case with a temporary folder and bundles of the built-in model or a fixture.
class ExportTestCase: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func bundle(_ profile: Profile, checkpoint: URL = Fixtures.tinyModel, prune: (any PruneStage)? = nil) throws -> BundleFile {
        let url = dir.appendingPathComponent("\(profile.name)-\(checkpoint.lastPathComponent)\(prune == nil ? "" : "-pruned").mpk")
        try Converter.convert(checkpoint: checkpoint.path, output: url.path, options: ConvertOptions(profile: profile, pruneStage: prune))
        return try BundleFile(path: url.path)
    }

    func bundle(_ profile: String, checkpoint: URL = Fixtures.tinyModel, prune: (any PruneStage)? = nil) throws -> BundleFile {
        try bundle(Profile.load(profile), checkpoint: checkpoint, prune: prune)
    }

    /// moepack's decoding of a stored tensor.
    func decoded(_ b: BundleFile, _ name: String) throws -> [Float] {
        let t = try XCTUnwrap(b.tensor(name), name)
        let p = try b.payload(t.payload, what: name)
        var out = [Float](repeating: .nan, count: t.elementCount)
        let rows = t.shape.count == 2 ? t.shape[0] : 1
        let rc = withExtendedLifetime(p) {
            out.withUnsafeMutableBufferPointer { moe_dequantize(t.format.id, p.buffer.baseAddress, Int64(rows), Int64(t.elementCount / rows), $0.baseAddress) }
        }
        XCTAssertEqual(rc, 0, name)
        return out
    }
}
