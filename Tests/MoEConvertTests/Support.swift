import Foundation
import MoEFormat
import MoERuntime
@testable import MoEConvert

/// Paths and loaders for the committed fixtures.
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func checkpoint(_ name: String) -> URL { root.appendingPathComponent("checkpoints/\(name)") }

    static func weights(_ name: String) throws -> CheckpointWeights {
        try CheckpointWeights(checkpoint: Checkpoint(directory: checkpoint(name)))
    }

    static func sequences(_ name: String) throws -> [[Int32]] {
        let data = try Data(contentsOf: checkpoint(name).appendingPathComponent("golden/sequences.json"))
        let object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        return (object["sequences"] as! [[Int]]).map { $0.map(Int32.init) }
    }

    /// transformers' routing for sequence `index`: layer → per token (experts, weights).
    static func routing(_ name: String, _ index: Int) throws -> [Int: [(experts: [Int], weights: [Double])]] {
        let data = try Data(contentsOf: checkpoint(name).appendingPathComponent("golden/routing_\(index).json"))
        let layers = (try JSONSerialization.jsonObject(with: data) as! [String: Any])["layers"] as! [String: Any]
        var result: [Int: [(experts: [Int], weights: [Double])]] = [:]
        for (key, value) in layers {
            let entry = value as! [String: Any]
            let experts = entry["experts"] as! [[Int]], weights = entry["weights"] as! [[Double]]
            result[Int(key)!] = zip(experts, weights).map { ($0, $1) }
        }
        return result
    }

    /// Calibration stats of a fixture over its golden sequences.
    static func calibrate(_ name: String) throws -> CalibrationStats {
        let weights = try weights(name)
        let model = try ErnieModel(weights: weights)
        return try Calibrator.run(model: model, weights: weights, windows: sequences(name), source: "golden sequences")
    }
}
