import Foundation
import MoEFormat
import MoERuntime

/// A fingerprint of a model's routing: SHA-256 over the architecture-defining config fields and
/// the f32 values of every MoE layer's router weight and correction bias.
///
/// These tensors are never quantized, so a checkpoint and any unpruned bundle made from it give
/// the same identity; stats measured on one can be applied to the other. Another model (or the
/// same one after pruning) gives a different identity.
public enum ModelIdentity {
    public static let scheme = "sha256(config+router) v1"

    public static func compute(_ weights: any WeightSource) throws -> String {
        let c = weights.config
        var hash = SHA256Hasher()
        hash.update(Data(c.canonicalText.utf8))
        for layer in c.moeLayers {
            let kept = weights.keptExperts(layer: layer)
            hash.update(Data("layer \(layer) experts \(kept.map(String.init).joined(separator: ","))\n".utf8))
            let router = try weights.matrix(c.names.router(layer), rows: c.moeNumExperts, cols: c.hiddenSize)
            var row = [Float](repeating: 0, count: c.hiddenSize)
            for r in 0..<c.moeNumExperts {
                row.withUnsafeMutableBufferPointer { router.copyRow(r, into: $0.baseAddress!) }
                hash.update(littleEndian: row)
            }
            hash.update(littleEndian: try weights.correctionBias(layer: layer))
        }
        return hash.finalizeHex()
    }
}
