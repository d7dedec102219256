import Foundation
import MoEConvert
import MoEFormat
@testable import MoEConvert
import MoERuntime
import MoETestSupport
import XCTest

/// calibrate → convert with the prune stage → run the bundle.
final class CalibratedConvertTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// f32 storage with a prune stage, so the pruned bundle can be compared exactly.
    private func profile(ratio: Double, criterion: String = "frequency") throws -> Profile {
        let url = dir.appendingPathComponent("f32-prune.toml")
        try """
        name = "f32-prune"
        description = "f32 with pruning"
        stages = ["prune", "quantize", "pack"]
        [prune]
        ratio = \(ratio)
        criterion = "\(criterion)"
        [formats]
        embeddings = "f32"
        attention = "f32"
        dense_mlp = "f32"
        shared_experts = "f32"
        routed_experts = "f32"
        lm_head = "f32"
        """.write(to: url, atomically: true, encoding: .utf8)
        return try Profile.load(url.path)
    }

    private func convert(_ name: String, _ profile: Profile, stats: CalibrationStats) throws -> BundleWeights {
        let out = dir.appendingPathComponent("\(name).mpk")
        try Converter.convert(checkpoint: Fixtures.checkpoint(name).path, output: out.path,
                              options: ConvertOptions(profile: profile, pruneStage: try CalibrationPruneStage(stats: stats)))
        return try BundleWeights(path: out.path)
    }

    func testPrunedBundleOfNeverChosenExpertsGivesIdenticalLogits() throws {
        let weights = try Fixtures.weights("moe_basic")
        let text = try Fixtures.sequences("moe_basic")[2]
        let full = try ErnieModel(weights: weights)
        let stats = try Calibrator.run(model: full, weights: weights, windows: [text], source: "t")
        XCTAssertEqual(stats.layers.map { $0.count.filter { $0 == 0 }.count }.min(), 2)
        let bundle = try convert("moe_basic", profile(ratio: 0.25), stats: stats)
        XCTAssertEqual(bundle.keptExperts(layer: 1).count, 6)
        XCTAssertNil(bundle.bundle.tensor("model.layers.1.mlp.experts.\(stats.layers[0].count.firstIndex(of: 0)!).up_proj.weight"))
        XCTAssertEqual(bundle.bundle.manifest.provenance.parameters["calibration_model_identity"], stats.model.identity)
        XCTAssertEqual(try ErnieModel(weights: bundle).logits(text), try full.logits(text))
    }

    func testBundleAndCheckpointShareTheModelIdentity() throws {
        let out = dir.appendingPathComponent("int8.mpk")
        try Converter.convert(checkpoint: Fixtures.checkpoint("moe_shared2_bias").path, output: out.path,
                              options: ConvertOptions(profile: Profile.load("wint8")))
        XCTAssertEqual(try ModelIdentity.compute(BundleWeights(path: out.path)),
                       try ModelIdentity.compute(Fixtures.weights("moe_shared2_bias")))
    }

    func testStatsOfAnotherModelAreRejected() throws {
        let stats = try Fixtures.calibrate("moe_sharded")
        XCTAssertThrowsError(try convert("moe_basic", profile(ratio: 0.25), stats: stats)) {
            XCTAssertTrue("\($0)".contains("measured on a different model"), "\($0)")
        }
        XCTAssertThrowsError(try convert("moe_basic", profile(ratio: 0.875), stats: Fixtures.calibrate("moe_basic"))) {
            XCTAssertTrue("\($0)".contains("fewer than moe_k = 2"), "\($0)")
        }
    }
}
