import MoERuntime

/// Per-channel sums of squares of the inputs a model's products read (an importance matrix, as
/// llama.cpp's imatrix): for every layer, the attention input; a dense MLP's input; in a MoE
/// layer the shared experts' input and, per routed expert, the input of the tokens routed to it.
/// Sums are kept in double, so they do not depend on how the tokens were grouped.
final class InputRecorder {
    struct Sums {
        var tokens = 0
        var sumSquares: [Double] = []

        mutating func add(_ rows: UnsafePointer<Float>, count: Int, width: Int) {
            if sumSquares.isEmpty { sumSquares = [Double](repeating: 0, count: width) }
            sumSquares.withUnsafeMutableBufferPointer { s in
                for t in 0..<count {
                    let row = rows + t * width
                    for c in 0..<width {
                        let v = Double(row[c])
                        s[c] += v * v
                    }
                }
            }
            tokens += count
        }

        func stats(width: Int) -> CalibrationStats.ChannelStats {
            .init(tokens: tokens, sumSquares: sumSquares.isEmpty ? [Double](repeating: 0, count: width) : sumSquares)
        }
    }

    struct Layer {
        var attention = Sums()
        var mlp: Sums?
        var shared: Sums?
        /// By original expert id.
        var experts: [Sums] = []

        /// `ids` maps a routed expert's storage index to its original id.
        mutating func add(_ site: InputSite, ids: [Int]?, numExperts: Int, _ rows: UnsafePointer<Float>, count: Int, width: Int) {
            switch site {
            case .attention: attention.add(rows, count: count, width: width)
            case .denseMLP:
                if mlp == nil { mlp = Sums() }
                mlp!.add(rows, count: count, width: width)
            case .sharedExperts:
                if shared == nil { shared = Sums() }
                shared!.add(rows, count: count, width: width)
            case .expert(let index):
                guard let ids, index >= 0, index < ids.count else { return }
                if experts.isEmpty { experts = Array(repeating: Sums(), count: numExperts) }
                experts[ids[index]].add(rows, count: count, width: width)
            case .attentionOutput, .denseMLPDown, .sharedExpertsDown, .expertDown, .lmHead:
                break   // not recorded (`InputRecorder.add`)
            }
        }
    }

    let numExperts: Int
    /// Storage index → original expert id, per MoE layer.
    let kept: [Int: [Int]]
    private var layers: [Int: Layer] = [:]
    private var width = 0

    init(numExperts: Int, kept: [Int: [Int]]) {
        self.numExperts = numExperts
        self.kept = kept
    }

    func add(layer: Int, site: InputSite, rows: UnsafePointer<Float>, count: Int, width: Int) {
        switch site {
        case .attention, .denseMLP, .sharedExperts, .expert: break
        case .attentionOutput, .denseMLPDown, .sharedExpertsDown, .expertDown, .lmHead:
            return   // the statistics cover the products that read the hidden states
        }
        self.width = width
        layers[layer, default: Layer()].add(site, ids: kept[layer], numExperts: numExperts, rows, count: count, width: width)
    }

    /// One entry per layer seen, in ascending order. Every expert of a MoE layer has an entry
    /// (zeros when no token was routed to it).
    func layerInputs() -> [CalibrationStats.LayerInputs] {
        layers.keys.sorted().map { index in
            let l = layers[index]!
            let isMoE = kept[index] != nil
            return CalibrationStats.LayerInputs(
                layer: index, attention: l.attention.stats(width: width), mlp: l.mlp?.stats(width: width),
                sharedExperts: l.shared?.stats(width: width),
                experts: isMoE ? (l.experts.isEmpty ? Array(repeating: Sums(), count: numExperts) : l.experts).map { $0.stats(width: width) } : nil)
        }
    }
}
