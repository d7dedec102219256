import MoEFormat

/// Which experts one token was sent to, with their mixing weights.
public struct RoutingDecision: Sendable {
    /// Storage indices of the chosen experts (into the kept experts of the layer).
    public var experts: [Int]
    public var weights: [Float]
    /// Router softmax probability of every kept expert, in storage order (for calibration
    /// statistics). The softmax runs over all of the model's experts, pruned ones included.
    public var probabilities: [Float]
}

/// Where in a layer products read a set of input rows (for statistics of the inputs).
public enum InputSite: Hashable, Sendable {
    /// q, k and v: the layer's normalised hidden states.
    case attention
    /// gate and up of a dense layer's MLP.
    case denseMLP
    /// gate and up of a MoE layer's shared experts: every token.
    case sharedExperts
    /// gate and up of a routed expert, by storage index (as `RoutingDecision.experts`): the
    /// tokens routed to it.
    case expert(Int)
    /// o_proj: the attention heads' outputs.
    case attentionOutput
    /// lm_head (`layer` is the layer count): the final norm of the last layer's output. Only
    /// the layer-by-layer pass (`ErnieModel.observeLayerByLayer`) reports it, for every row.
    case lmHead
    /// down of a dense layer's MLP, of the shared experts, of a routed expert (storage index):
    /// silu(gate) · up of the same tokens.
    case denseMLPDown
    case sharedExpertsDown
    case expertDown(Int)
}

/// Observes a forward pass: routing inside MoE layers, and the inputs of the products
/// (calibration records statistics through this).
public protocol RoutingObserver: AnyObject {
    /// Called once per MoE layer per forward pass. `expertOutputs[i]` is, for token t and choice
    /// j, the routing-weighted output norm of expert `decisions[t].experts[j]`.
    func observe(layer: Int, decisions: [RoutingDecision], weightedOutputNorms: [[Float]])
    /// Called with the `count` rows of `width` values that the products at `site` of `layer`
    /// read, before they run. Does nothing unless implemented.
    func observeInputs(layer: Int, site: InputSite, rows: UnsafePointer<Float>, count: Int, width: Int)
}

extension RoutingObserver {
    public func observeInputs(layer: Int, site: InputSite, rows: UnsafePointer<Float>, count: Int, width: Int) {}
}

extension Optional where Wrapped == any RoutingObserver {
    /// A callback handing `count` rows (of the width it is given) read at `site` of `layer` to
    /// the observer; nil without one.
    func inputs(layer: Int, site: InputSite, count: Int) -> ((UnsafePointer<Float>, Int) -> Void)? {
        map { o in { rows, width in o.observeInputs(layer: layer, site: site, rows: rows, count: count, width: width) } }
    }
}

/// ERNIE 4.5's mixture-of-experts block, computed as transformers does: f32 router, softmax,
/// top-k chosen on softmax + correction bias, weights from the plain softmax renormalised with
/// a floor of moe_norm_min, plus shared experts on every token.
///
/// After pruning, the router keeps a row for every original expert and pruned experts are
/// masked out of the top-k choice. The softmax (which the correction bias is added to) is the
/// unpruned model's, so a token whose top-k never included a pruned expert is routed exactly
/// as before. (Dropping the router rows of pruned experts would rescale the remaining
/// probabilities against the correction bias and change some choices.)
struct MoEBlock: Sendable {
    let layer: Int
    /// [moe_num_experts, hidden]: every original expert.
    let router: any MatrixOperator
    /// moe_num_experts entries.
    let correctionBias: [Float]
    /// Original expert id of each stored expert.
    let keptIDs: [Int]
    let experts: [FeedForward]
    let shared: FeedForward?
    let topK: Int
    /// The router rule (`RouterRule`): divide the chosen probabilities by their sum, at least `normMin`.
    let renormalize: Bool
    let normMin: Float
    let hidden: Int

    init(weights: WeightSource, layer: Int) throws {
        let c = weights.config, names = c.names
        let kept = weights.keptExperts(layer: layer)
        self.layer = layer
        hidden = c.hiddenSize
        topK = c.moeK
        normMin = Float(c.router.normMin)
        renormalize = c.router.renormalize
        guard kept.count >= c.moeK, kept.allSatisfy({ $0 >= 0 && $0 < c.moeNumExperts }) else {
            throw FormatError("layer \(layer): kept experts \(kept) are invalid for \(c.moeNumExperts) experts and top-\(c.moeK)")
        }
        keptIDs = kept
        router = try weights.matrix(names.router(layer), rows: c.moeNumExperts, cols: c.hiddenSize)
        correctionBias = try weights.correctionBias(layer: layer)
        experts = try kept.map { e in
            try FeedForward(weights: weights, name: { p, _ in names.expert(layer, e, p) }, width: c.moeIntermediateSize, bias: false)
        }
        shared = c.moeNumSharedExperts > 0
            ? try FeedForward(weights: weights, name: { names.sharedExperts(layer, $0, bias: $1) },
                              width: c.sharedExpertSize, bias: c.mlpBias)
            : nil
    }

    func route(_ x: UnsafePointer<Float>, count: Int) -> [RoutingDecision] {
        let e = router.rows
        var logits = [Float](repeating: 0, count: count * e)
        logits.withUnsafeMutableBufferPointer { router.multiply(x, count: count, into: $0.baseAddress!) }
        return (0..<count).map { t in
            var all = Array(logits[(t * e)..<((t + 1) * e)])
            all.withUnsafeMutableBufferPointer { Ops.softmax($0.baseAddress!, count: e) }
            let probabilities = keptIDs.map { all[$0] }
            let scores = keptIDs.map { all[$0] + correctionBias[$0] }
            // Choose on probability + bias among the stored experts; ties go to the lower index.
            let chosen = Ops.topIndices(scores, count: topK)
            let raw = chosen.map { probabilities[$0] }
            guard renormalize else { return RoutingDecision(experts: chosen, weights: raw, probabilities: probabilities) }
            let denominator = max(raw.reduce(0, +), normMin)
            return RoutingDecision(experts: chosen, weights: raw.map { $0 / denominator }, probabilities: probabilities)
        }
    }

    /// x [T, hidden] → y [T, hidden]. Tokens are grouped by expert so each expert's weights are
    /// read once per call and multiplied as a matrix; the gate/up products of all busy experts
    /// and the shared experts run as one kernel call, their down products as a second.
    func callAsFunction(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>,
                        observer: RoutingObserver? = nil) {
        let decisions = route(x, count: count)
        var assignments = [[(token: Int, slot: Int)]](repeating: [], count: experts.count)
        for (t, d) in decisions.enumerated() {
            for (slot, expert) in d.experts.enumerated() { assignments[expert].append((t, slot)) }
        }
        // Work list: (feed-forward, input rows, first token row in `gathered`, row count, first
        // float of its gate/up scratch). Routed experts first, then the shared experts.
        var work: [(ffn: FeedForward, input: UnsafePointer<Float>?, offset: Int, rows: Int, scratch: Int)] = []
        var gatheredRows = 0, scratchFloats = 0
        for (expert, items) in assignments.enumerated() where !items.isEmpty {
            work.append((experts[expert], nil, gatheredRows, items.count, scratchFloats))
            gatheredRows += items.count
            scratchFloats += 2 * items.count * experts[expert].width
        }
        if let shared {
            work.append((shared, x, 0, count, scratchFloats))
            scratchFloats += 2 * count * shared.width
        }
        let outputRows = gatheredRows + (shared == nil ? 0 : count)
        let gathered = UnsafeMutablePointer<Float>.allocate(capacity: max(gatheredRows * hidden, 1))
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(scratchFloats, 1))
        let outputs = UnsafeMutablePointer<Float>.allocate(capacity: max(outputRows * hidden, 1))
        defer {
            gathered.deallocate()
            scratch.deallocate()
            outputs.deallocate()
        }
        var row = 0
        for items in assignments {
            for item in items {
                (gathered + row * hidden).update(from: x + item.token * hidden, count: hidden)
                row += 1
            }
        }
        if let observer {
            var offset = 0
            for (expert, items) in assignments.enumerated() where !items.isEmpty {
                observer.observeInputs(layer: layer, site: .expert(expert), rows: gathered + offset * hidden,
                                       count: items.count, width: hidden)
                offset += items.count
            }
            if shared != nil { observer.observeInputs(layer: layer, site: .sharedExperts, rows: x, count: count, width: hidden) }
        }
        // gate/up of everything, activation, then every down product.
        var gateUp = LinearBatch(), downs = LinearBatch()
        var outputAt = 0
        for w in work {
            let input = w.input ?? UnsafePointer(gathered + w.offset * hidden)
            w.ffn.addGateUp(to: &gateUp, input, count: w.rows, scratch: scratch + w.scratch)
            downs.add(w.ffn.down, scratch + w.scratch, count: w.rows, into: outputs + outputAt * hidden)
            outputAt += w.rows
        }
        gateUp.run()
        for w in work { w.ffn.activate(count: w.rows, scratch: scratch + w.scratch) }
        if let observer {
            var next = 0
            let busy = assignments.indices.filter { !assignments[$0].isEmpty }
            for w in work {
                let site: InputSite = w.input == nil ? .expertDown(busy[next]) : .sharedExpertsDown
                if w.input == nil { next += 1 }
                observer.observeInputs(layer: layer, site: site, rows: scratch + w.scratch, count: w.rows, width: w.ffn.width)
            }
        }
        downs.run()

        y.initialize(repeating: 0, count: count * hidden)
        var norms = observer == nil ? [] : [[Float]](repeating: [Float](repeating: 0, count: topK), count: count)
        row = 0
        for items in assignments {
            for item in items {
                let w = decisions[item.token].weights[item.slot]
                let out = outputs + row * hidden, target = y + item.token * hidden
                for j in 0..<hidden { target[j] += w * out[j] }
                if observer != nil {
                    // Only calibration needs the norm; the serial sum would keep the add above from vectorising.
                    var sumSquares: Float = 0
                    for j in 0..<hidden { sumSquares += (w * out[j]) * (w * out[j]) }
                    norms[item.token][item.slot] = sumSquares.squareRoot()
                }
                row += 1
            }
        }
        if shared != nil {
            let s = outputs + gatheredRows * hidden
            for i in 0..<(count * hidden) { y[i] += s[i] }
        }
        observer?.observe(layer: layer, decisions: decisions, weightedOutputNorms: norms)
    }
}
