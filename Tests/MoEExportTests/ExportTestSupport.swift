import Foundation
import MoEConvert
import MoEFormat
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
        try b.decodedValues(of: XCTUnwrap(b.tensor(name), name))
    }

    /// A profile with one format per tensor class (router and norms f32).
    func profile(_ name: String, _ formats: [String: String]) throws -> Profile {
        try Profile(toml: """
            name = "\(name)"
            stages = ["quantize", "pack"]
            [formats]
            \(formats.sorted { $0.key < $1.key }.map { "\($0.key) = \"\($0.value)\"" }.joined(separator: "\n"))
            """, origin: "test")
    }
}
