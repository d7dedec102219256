import MoEFormat

/// The importance of each input column of a tensor for calibration-aware rounding: the mean
/// square of that input channel over the calibration tokens that reached the product (the
/// diagonal of XᵀX / n, llama.cpp's imatrix), from a version 2 calibration file. The formats
/// with a scale search then choose each group's scale to minimise
/// Σ_j importance_j (w_j − deq_j)², the output error of the group under that diagonal.
///
/// The statistics cover the products that read a layer's normalised hidden states: q, k and v,
/// the gate and up of a dense MLP, of the shared experts and of each routed expert (over the
/// tokens routed to it). o_proj, down, the embeddings and lm_head get none and round to nearest,
/// as does an expert no calibration token reached (all its importance is zero).
public struct ImportanceMap: Sendable {
    public let stats: CalibrationStats
    private let inputs: [Int: CalibrationStats.LayerInputs]

    public init(stats: CalibrationStats) throws {
        guard let inputs = stats.inputs else {
            throw CalibrationError("the calibration file has no input statistics (version \(stats.version)): run calibrate again for calibration-aware rounding, or give --rounding nearest")
        }
        self.stats = stats
        self.inputs = Dictionary(inputs.map { ($0.layer, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Per-column importance of a 2-D tensor with `cols` columns, nil when no statistics cover it.
    public func importance(for spec: TensorSpec, cols: Int) -> [Float]? {
        guard let layer = spec.layer, let l = inputs[layer] else { return nil }
        let readsHidden = ["q_proj", "k_proj", "v_proj"].contains { spec.name.hasSuffix(".\($0).weight") }
        let gateOrUp = spec.name.hasSuffix(".gate_proj.weight") || spec.name.hasSuffix(".up_proj.weight")
        let channels: CalibrationStats.ChannelStats?
        switch spec.tensorClass {
        case .attention: channels = readsHidden ? l.attention : nil
        case .denseMLP: channels = gateOrUp ? l.mlp : nil
        case .sharedExperts: channels = gateOrUp ? l.sharedExperts : nil
        case .routedExperts:
            guard gateOrUp, let e = spec.expert, let experts = l.experts, e >= 0, e < experts.count else { return nil }
            channels = experts[e]
        default: channels = nil
        }
        guard let c = channels, c.sumSquares.count == cols else { return nil }
        let n = Double(max(c.tokens, 1))
        return c.sumSquares.map { Float($0 / n) }
    }
}
