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
        hash.update(Data(canonicalConfig(c).utf8))
        for layer in c.moeLayers {
            let p = "model.layers.\(layer).mlp"
            let kept = weights.keptExperts(layer: layer)
            hash.update(Data("layer \(layer) experts \(kept.map(String.init).joined(separator: ","))\n".utf8))
            let router = try weights.matrix("\(p).gate.weight", rows: c.moeNumExperts, cols: c.hiddenSize)
            var row = [Float](repeating: 0, count: c.hiddenSize)
            for r in 0..<c.moeNumExperts {
                row.withUnsafeMutableBufferPointer { router.copyRow(r, into: $0.baseAddress!) }
                hash.update(littleEndianBytes(row))
            }
            hash.update(littleEndianBytes(try weights.correctionBias(layer: layer)))
        }
        return hash.finalizeHex()
    }

    /// IEEE bit patterns in little-endian order, so equal values hash equally on any host.
    static func littleEndianBytes(_ values: [Float]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * 4)
        for v in values {
            let bits = v.bitPattern.littleEndian
            withUnsafeBytes(of: bits) { bytes.append(contentsOf: $0) }
        }
        return bytes
    }

    /// The config fields that define the computation, in a fixed text form (raw config.json
    /// bytes are not used: a bundle may store the config differently).
    static func canonicalConfig(_ c: ModelConfig) -> String {
        let fields: [(String, String)] = [
            ("architecture", c.architecture.rawValue), ("vocab_size", "\(c.vocabSize)"),
            ("hidden_size", "\(c.hiddenSize)"), ("intermediate_size", "\(c.intermediateSize)"),
            ("num_hidden_layers", "\(c.numHiddenLayers)"), ("num_attention_heads", "\(c.numAttentionHeads)"),
            ("num_key_value_heads", "\(c.numKeyValueHeads)"), ("head_dim", "\(c.headDim)"),
            ("rms_norm_eps", "\(c.rmsNormEps)"), ("rope_theta", "\(c.ropeTheta)"), ("use_bias", "\(c.useBias)"),
            ("tie_word_embeddings", "\(c.tieWordEmbeddings)"), ("moe_num_experts", "\(c.moeNumExperts)"),
            ("moe_k", "\(c.moeK)"), ("moe_intermediate_size", "\(c.moeIntermediateSize)"),
            ("moe_num_shared_experts", "\(c.moeNumSharedExperts)"), ("moe_layers", "\(c.moeLayers)"),
            ("moe_norm_min", "\(c.moeNormMin)"),
        ]
        return fields.map { "\($0.0)=\($0.1)\n" }.joined()
    }
}
