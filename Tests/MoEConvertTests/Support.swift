import Foundation
import MoEFormat
import MoERuntime
import MoETestSupport
@testable import MoEConvert

/// Loaders for the committed fixtures used by the calibration and pruning tests.
extension Fixtures {
    static func weights(_ name: String) throws -> CheckpointWeights {
        try CheckpointWeights(checkpoint: Checkpoint(directory: checkpoint(name)))
    }

    /// transformers' routing for sequence `index`: layer → per token (experts, weights).
    static func routing(_ name: String, _ index: Int) throws -> [Int: [(experts: [Int], weights: [Double])]] {
        let data = try Data(contentsOf: checkpoint(name).appendingPathComponent("golden/routing_\(index).json"))
        struct File: Decodable {
            struct Layer: Decodable { let experts: [[Int]]; let weights: [[Double]] }
            let layers: [String: Layer]
        }
        let file = try JSONDecoder().decode(File.self, from: data)
        var result: [Int: [(experts: [Int], weights: [Double])]] = [:]
        for (key, layer) in file.layers {
            guard let index = Int(key) else { continue }
            result[index] = zip(layer.experts, layer.weights).map { ($0, $1) }
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
