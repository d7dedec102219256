import Foundation
import MoEFormat

/// A fingerprint of what quantization and pruning leave untouched: the config fields that
/// define the computation, every norm weight, and each MoE layer's full router and correction
/// bias. Bundles keep all of these in f32 (the router keeps its pruned experts' rows), and a
/// checkpoint's bf16 or f16 values widen to the same f32 values, so a checkpoint and every
/// bundle made from it share one fingerprint while another model does not.
///
/// Reference files (`ReferenceFile`) record it, so a bundle is only scored against the logits
/// of the checkpoint it came from.
public enum ModelFingerprint {
    public static let scheme = "sha256(config+norms+routers) v1"

    public static func compute(_ model: ErnieModel) -> String {
        let c = model.config
        var hash = SHA256Hasher()
        hash.update(Data(c.canonicalText.utf8))
        var row = [Float](repeating: 0, count: c.hiddenSize)
        for layer in model.layers {
            hash.update(littleEndian: layer.inputNorm)
            hash.update(littleEndian: layer.postAttentionNorm)
            guard case .moe(let moe) = layer.mlp else { continue }
            for r in 0..<moe.router.rows {
                row.withUnsafeMutableBufferPointer { moe.router.copyRow(r, into: $0.baseAddress!) }
                hash.update(littleEndian: row)
            }
            hash.update(littleEndian: moe.correctionBias)
        }
        hash.update(littleEndian: model.finalNorm)
        return hash.finalizeHex()
    }
}
