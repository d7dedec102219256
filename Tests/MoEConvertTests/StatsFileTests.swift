import Foundation
import XCTest
import MoEFormat
import MoERuntime
import MoETestSupport
@testable import MoEConvert

final class StatsFileTests: XCTestCase {
    func testRoundTripThroughJSON() throws {
        let stats = try Fixtures.calibrate("moe_basic")
        let data = try stats.jsonData()
        XCTAssertEqual(try CalibrationStats(jsonData: data), stats)
        let object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        XCTAssertEqual(object["format"] as? String, "moepack-calibration")
        XCTAssertEqual(object["version"] as? Int, 2)
        let layer = (object["layers"] as! [[String: Any]])[0]
        XCTAssertNotNil(layer["output_norm_mean"])
        XCTAssertNotNil(layer["router_entropy"])
        let inputs = (object["inputs"] as! [[String: Any]])[1]
        XCTAssertNotNil((inputs["attention"] as? [String: Any])?["sum_squares"])
        XCTAssertEqual((inputs["experts"] as? [Any])?.count, 8)
    }

    func testVersionOneFilesStillLoad() throws {
        let stats = try Fixtures.calibrate("moe_basic")
        var object = try JSONSerialization.jsonObject(with: stats.jsonData()) as! [String: Any]
        object["version"] = 1
        object.removeValue(forKey: "inputs")
        let old = try CalibrationStats(jsonData: JSONSerialization.data(withJSONObject: object))
        XCTAssertNil(old.inputs)
        XCTAssertEqual(old.layers, stats.layers)
        XCTAssertNoThrow(try ExpertPruner.plan(stats: old, criterion: .default, budget: .perLayer(ratio: 0.25)))
    }

    func testMalformedInputStatisticsAreReported() throws {
        var object = try JSONSerialization.jsonObject(with: Fixtures.calibrate("moe_basic").jsonData()) as! [String: Any]
        var inputs = object["inputs"] as! [[String: Any]]
        var attention = inputs[0]["attention"] as! [String: Any]
        attention["sum_squares"] = [1.0, -2.0]
        inputs[0]["attention"] = attention
        object["inputs"] = inputs
        XCTAssertThrowsError(try CalibrationStats(jsonData: JSONSerialization.data(withJSONObject: object))) {
            XCTAssertTrue("\($0)".contains("input statistics of layer 0 are malformed"), "\($0)")
        }
        let fresh = try JSONSerialization.jsonObject(with: Fixtures.calibrate("moe_basic").jsonData()) as! [String: Any]
        inputs = fresh["inputs"] as! [[String: Any]]
        inputs[0].removeValue(forKey: "mlp")
        inputs[0]["experts"] = []
        object["inputs"] = inputs
        XCTAssertThrowsError(try CalibrationStats(jsonData: JSONSerialization.data(withJSONObject: object))) {
            XCTAssertTrue("\($0)".contains("do not fit its kind"), "\($0)")
        }
    }

    func testWrongVersionAndFormatAreClearErrors() throws {
        var object = try JSONSerialization.jsonObject(with: Fixtures.calibrate("moe_basic").jsonData()) as! [String: Any]
        object["version"] = 3
        XCTAssertThrowsError(try CalibrationStats(jsonData: JSONSerialization.data(withJSONObject: object))) {
            XCTAssertTrue("\($0)".contains("calibration format version 3"), "\($0)")
        }
        object["format"] = "something-else"
        XCTAssertThrowsError(try CalibrationStats(jsonData: JSONSerialization.data(withJSONObject: object))) {
            XCTAssertTrue("\($0)".contains("not a moepack calibration file"), "\($0)")
        }
        XCTAssertThrowsError(try CalibrationStats(jsonData: Data("[1]".utf8))) {
            XCTAssertTrue("\($0)".contains("not a JSON object"))
        }
    }

    func testMalformedFieldsAreReported() throws {
        var object = try JSONSerialization.jsonObject(with: Fixtures.calibrate("moe_basic").jsonData()) as! [String: Any]
        var layers = object["layers"] as! [[String: Any]]
        layers[0]["count"] = [1, 2]
        object["layers"] = layers
        XCTAssertThrowsError(try CalibrationStats(jsonData: JSONSerialization.data(withJSONObject: object))) {
            XCTAssertTrue("\($0)".contains("does not have 8 values per expert"), "\($0)")
        }
        object.removeValue(forKey: "model")
        XCTAssertThrowsError(try CalibrationStats(jsonData: JSONSerialization.data(withJSONObject: object))) {
            XCTAssertTrue("\($0)".contains("missing field model"), "\($0)")
        }
    }

    func testIdentityDetectsAnotherModel() throws {
        let basic = try ModelIdentity.compute(Fixtures.weights("moe_basic"))
        // Same shapes and config, different weights.
        let sharded = try ModelIdentity.compute(Fixtures.weights("moe_sharded"))
        XCTAssertEqual(basic, try ModelIdentity.compute(Fixtures.weights("moe_basic")))
        XCTAssertNotEqual(basic, sharded)
        XCTAssertEqual(basic.count, 64)
        let stats = try Fixtures.calibrate("moe_basic")
        let config = try Fixtures.weights("moe_basic").config
        XCTAssertNoThrow(try stats.checkApplies(to: basic, config: config))
        XCTAssertThrowsError(try stats.checkApplies(to: sharded, config: config)) {
            XCTAssertTrue("\($0)".contains("measured on a different model"), "\($0)")
        }
    }

    func testIdentityChangesWhenExpertsArePruned() throws {
        let weights = try Fixtures.weights("moe_basic")
        var plan = PruningPlan.full(weights.config)
        XCTAssertEqual(try ModelIdentity.compute(PrunedWeights(base: weights, plan: plan)), try ModelIdentity.compute(weights))
        plan.kept[1] = [0, 1, 2, 3, 4, 5]
        XCTAssertNotEqual(try ModelIdentity.compute(PrunedWeights(base: weights, plan: plan)), try ModelIdentity.compute(weights))
    }
}
