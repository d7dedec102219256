/// What a tensor is for. Converter profiles choose a storage format per class, the runtime
/// wires tensors by role, and `inspect` counts parameters by class.
public enum TensorClass: String, Sendable, Codable, CaseIterable {
    case embeddings
    case attention
    case denseMLP = "dense_mlp"
    case sharedExperts = "shared_experts"
    case routedExperts = "routed_experts"
    case router
    case norms
    case lmHead = "lm_head"
    case biases
    /// Tensors a family carries into bundles unmodified (ERNIE's multi-token-prediction heads,
    /// for a later speculative decoder): not used for next-token generation.
    case mtp
}

/// One tensor the architecture expects, with its role and shape.
public struct TensorSpec: Sendable, Equatable {
    public let name: String
    public let shape: [Int]
    public let tensorClass: TensorClass
    /// Layer index for per-layer tensors.
    public let layer: Int?
    /// Routed expert index, for expert tensors.
    public let expert: Int?
    /// A tensor some real checkpoints leave out; the runtime then uses its documented default.
    public var optional = false
    /// A vector stored with a leading 1 ([1, n], ERNIE's correction bias).
    public var isVector = false

    public init(name: String, shape: [Int], tensorClass: TensorClass, layer: Int?, expert: Int?, optional: Bool = false,
                isVector: Bool = false) {
        self.name = name
        self.shape = shape
        self.tensorClass = tensorClass
        self.layer = layer
        self.expert = expert
        self.optional = optional
        self.isVector = isVector
    }

    public var elementCount: Int { shape.reduce(1, *) }
}

/// The tensor names and shapes of a checkpoint in the hub's per-expert layout, from the
/// config and its family's names (`TensorNames`).
public struct ModelLayout: Sendable {
    public let config: ModelConfig
    public let tensors: [TensorSpec]

    /// `keptExperts(layer)`: the routed experts a pruned bundle stores for an MoE layer (nil: all).
    public init(config: ModelConfig, keptExperts: ((Int) -> [Int])? = nil) {
        self.config = config
        var specs: [TensorSpec] = []
        let c = config, n = config.names
        let h = c.hiddenSize
        func add(_ name: String, _ shape: [Int], _ cls: TensorClass, layer: Int? = nil, expert: Int? = nil,
                 optional: Bool = false, isVector: Bool = false) {
            specs.append(TensorSpec(name: name, shape: shape, tensorClass: cls, layer: layer, expert: expert, optional: optional,
                                    isVector: isVector))
        }
        func mlp(_ name: (FeedForwardProjection, Bool) -> String, width: Int, _ cls: TensorClass, layer: Int,
                 expert: Int? = nil, bias: Bool) {
            add(name(.gate, false), [width, h], cls, layer: layer, expert: expert)
            add(name(.up, false), [width, h], cls, layer: layer, expert: expert)
            add(name(.down, false), [h, width], cls, layer: layer, expert: expert)
            if bias {
                add(name(.gate, true), [width], .biases, layer: layer)
                add(name(.up, true), [width], .biases, layer: layer)
                add(name(.down, true), [h], .biases, layer: layer)
            }
        }
        add(n.embedding, [c.vocabSize, h], .embeddings)
        let q = c.numAttentionHeads * c.headDim
        let kv = c.numKeyValueHeads * c.headDim
        for l in 0..<c.numHiddenLayers {
            add(n.inputNorm(l), [h], .norms, layer: l)
            add(n.postAttentionNorm(l), [h], .norms, layer: l)
            for (proj, rows, cols) in [(AttentionProjection.q, q, h), (.k, kv, h), (.v, kv, h), (.o, h, q)] {
                add(n.attention(l, proj, bias: false), [rows, cols], .attention, layer: l)
                if c.attentionBias { add(n.attention(l, proj, bias: true), [rows], .biases, layer: l) }
            }
            if c.qkNorm {
                add(n.queryNorm(l), [c.headDim], .norms, layer: l)
                add(n.keyNorm(l), [c.headDim], .norms, layer: l)
            }
            if c.isMoELayer(l) {
                add(n.router(l), [c.moeNumExperts, h], .router, layer: l)
                if c.router.correctionBias {
                    // Some exports drop the correction bias (with moe_use_aux_free false): zero then.
                    add(n.routerBias(l), [1, c.moeNumExperts], .router, layer: l, optional: true, isVector: true)
                }
                for e in keptExperts?(l) ?? Array(0..<c.moeNumExperts) {
                    mlp({ p, _ in n.expert(l, e, p) }, width: c.moeIntermediateSize, .routedExperts, layer: l, expert: e, bias: false)
                }
                if c.moeNumSharedExperts > 0 {
                    mlp({ n.sharedExperts(l, $0, bias: $1) }, width: c.sharedExpertSize, .sharedExperts, layer: l, bias: c.mlpBias)
                }
            } else {
                mlp({ n.denseMLP(l, $0, bias: $1) }, width: c.intermediateSize, .denseMLP, layer: l, bias: c.mlpBias)
            }
        }
        add(n.finalNorm, [h], .norms)
        if !c.tieWordEmbeddings { add(n.lmHead, [c.vocabSize, h], .lmHead) }
        if c.hasLMHeadBias { add(n.lmHeadBias, [c.vocabSize], .biases) }
        tensors = specs
    }

    /// How many tensors the layout of `config` names, with `expertsKept(layer)` routed experts
    /// in each MoE layer; computed without building the layout. The config's sizes are bounded
    /// (`ModelConfig.maxLayers`, `maxExperts`), so this cannot overflow.
    public static func tensorCount(config c: ModelConfig, expertsKept: ((Int) -> Int)? = nil) -> Int {
        let mlpBias = c.mlpBias ? 1 : 0
        func mlp(bias: Int) -> Int { 3 + 3 * bias }
        var count = 2 + (c.tieWordEmbeddings ? 0 : 1) + (c.hasLMHeadBias ? 1 : 0) // embedding, final norm, head
        let moeLayers = Set(c.moeLayers)
        for layer in 0..<c.numHiddenLayers {
            count += 2 + 4 + (c.attentionBias ? 4 : 0) + (c.qkNorm ? 2 : 0)
            if moeLayers.contains(layer) {
                count += 1 + (c.router.correctionBias ? 1 : 0) + 3 * (expertsKept?(layer) ?? c.moeNumExperts)
                if c.moeNumSharedExperts > 0 { count += mlp(bias: mlpBias) }
            } else {
                count += mlp(bias: mlpBias)
            }
        }
        return count
    }

    /// Fails when `config` describes far more tensors than the file holds, before anything is
    /// allocated in proportion to the config's sizes (a hostile `num_hidden_layers` or
    /// `moe_num_experts` otherwise builds a layout of millions of names). Within twice the
    /// file's own count the layout is built and its validation names what is missing.
    public static func checkPlausible(_ config: ModelConfig, holding present: Int, in source: String,
                                      expertsKept: ((Int) -> Int)? = nil) throws {
        let expected = tensorCount(config: config, expertsKept: expertsKept)
        guard expected <= 2 * present + 64 else {
            throw FormatError("\(source): the config describes \(expected) tensors (\(config.numHiddenLayers) layers, "
                              + "\(config.moeNumExperts) experts), but the file holds only \(present)")
        }
    }

    public func spec(_ name: String) -> TensorSpec? { tensors.first { $0.name == name } }

    /// Checks a set of tensor names and shapes against the layout; reports every missing,
    /// unexpected or misshapen tensor by name (first few of each).
    public func validate(names: [String], shape: (String) throws -> [Int]) throws {
        let expected = Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, $0) })
        if let refusal = config.architecture.family.refusal(names: names) { throw FormatError(refusal) }
        let names = names.filter { !isIgnored($0) }
        let present = Set(names)
        var problems: [String] = []
        let missing = tensors.filter { !$0.optional && !present.contains($0.name) }.map(\.name)
        if !missing.isEmpty { problems.append("missing tensors: " + Self.list(missing)) }
        let unexpected = names.filter { expected[$0] == nil }.sorted()
        if !unexpected.isEmpty { problems.append("unexpected tensors: " + Self.list(unexpected)) }
        for spec in tensors where present.contains(spec.name) {
            let actual = try shape(spec.name)
            // A [1, n] tensor (ERNIE's correction bias) may also be stored as [n].
            let ok = actual == spec.shape || (spec.shape.first == 1 && actual == Array(spec.shape.dropFirst()))
            if !ok { problems.append("tensor \(spec.name) has shape \(actual), expected \(spec.shape)") }
        }
        if !problems.isEmpty { throw FormatError(problems.joined(separator: "; ")) }
    }

    /// Tensors of the checkpoint that the next-token model does not use and that bundles carry
    /// unmodified (ERNIE's multi-token-prediction heads, `model.mtp_*`): validation skips them.
    public func isCarried(_ name: String) -> Bool { config.architecture.family.isCarried(name) }

    /// A stored lm_head of a tied checkpoint: transformers ties the head to the embedding and
    /// never reads it, and neither does moepack.
    public func isUnusedHead(_ name: String) -> Bool { config.tieWordEmbeddings && name == config.names.lmHead }

    /// Names validation passes over: carried tensors and a tied checkpoint's stored head.
    public func isIgnored(_ name: String) -> Bool { isCarried(name) || isUnusedHead(name) }

    private static func list(_ names: [String]) -> String {
        names.count <= 5 ? names.joined(separator: ", ") : names.prefix(5).joined(separator: ", ") + " and \(names.count - 5) more"
    }

    /// Parameters per token: routed experts count only `moe_k` of `moe_num_experts`.
    public var parameterCounts: (total: Int, activePerToken: Int) {
        var total = 0, active = 0
        let routedFraction = config.moeNumExperts > 0 ? Double(config.moeK) / Double(config.moeNumExperts) : 0
        var routed = 0
        for t in tensors {
            total += t.elementCount
            if t.tensorClass == .routedExperts { routed += t.elementCount } else if t.tensorClass != .embeddings || config.tieWordEmbeddings { active += t.elementCount }
        }
        active += Int((Double(routed) * routedFraction).rounded())
        return (total, active)
    }
}
