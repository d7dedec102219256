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
    /// Multi-token-prediction heads of hub MoE checkpoints (`model.mtp_*`): not used for
    /// next-token generation, carried into bundles unmodified for a later speculative decoder.
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

    public init(name: String, shape: [Int], tensorClass: TensorClass, layer: Int?, expert: Int?, optional: Bool = false) {
        self.name = name
        self.shape = shape
        self.tensorClass = tensorClass
        self.layer = layer
        self.expert = expert
        self.optional = optional
    }

    public var elementCount: Int { shape.reduce(1, *) }
}

/// The tensor names and shapes of an ERNIE 4.5 checkpoint in the hub's per-expert layout.
public struct ModelLayout: Sendable {
    public let config: ModelConfig
    public let tensors: [TensorSpec]

    /// `keptExperts(layer)`: the routed experts a pruned bundle stores for an MoE layer (nil: all).
    public init(config: ModelConfig, keptExperts: ((Int) -> [Int])? = nil) {
        self.config = config
        var specs: [TensorSpec] = []
        let c = config
        let h = c.hiddenSize
        func add(_ name: String, _ shape: [Int], _ cls: TensorClass, layer: Int? = nil, expert: Int? = nil,
                 optional: Bool = false) {
            specs.append(TensorSpec(name: name, shape: shape, tensorClass: cls, layer: layer, expert: expert, optional: optional))
        }
        func mlp(_ prefix: String, width: Int, _ cls: TensorClass, layer: Int, expert: Int? = nil, bias: Bool) {
            add("\(prefix).gate_proj.weight", [width, h], cls, layer: layer, expert: expert)
            add("\(prefix).up_proj.weight", [width, h], cls, layer: layer, expert: expert)
            add("\(prefix).down_proj.weight", [h, width], cls, layer: layer, expert: expert)
            if bias {
                add("\(prefix).gate_proj.bias", [width], .biases, layer: layer)
                add("\(prefix).up_proj.bias", [width], .biases, layer: layer)
                add("\(prefix).down_proj.bias", [h], .biases, layer: layer)
            }
        }
        add("model.embed_tokens.weight", [c.vocabSize, h], .embeddings)
        let q = c.numAttentionHeads * c.headDim
        let kv = c.numKeyValueHeads * c.headDim
        for l in 0..<c.numHiddenLayers {
            let p = "model.layers.\(l)"
            add("\(p).input_layernorm.weight", [h], .norms, layer: l)
            add("\(p).post_attention_layernorm.weight", [h], .norms, layer: l)
            for (proj, rows, cols) in [("q_proj", q, h), ("k_proj", kv, h), ("v_proj", kv, h), ("o_proj", h, q)] {
                add("\(p).self_attn.\(proj).weight", [rows, cols], .attention, layer: l)
                if c.useBias { add("\(p).self_attn.\(proj).bias", [rows], .biases, layer: l) }
            }
            if c.isMoELayer(l) {
                add("\(p).mlp.gate.weight", [c.moeNumExperts, h], .router, layer: l)
                // Some exports drop the correction bias (with moe_use_aux_free false): zero then.
                add("\(p).mlp.moe_statics.e_score_correction_bias", [1, c.moeNumExperts], .router, layer: l, optional: true)
                for e in keptExperts?(l) ?? Array(0..<c.moeNumExperts) {
                    mlp("\(p).mlp.experts.\(e)", width: c.moeIntermediateSize, .routedExperts, layer: l, expert: e, bias: false)
                }
                if c.moeNumSharedExperts > 0 {
                    mlp("\(p).mlp.shared_experts", width: c.sharedExpertSize, .sharedExperts, layer: l, bias: c.useBias)
                }
            } else {
                mlp("\(p).mlp", width: c.intermediateSize, .denseMLP, layer: l, bias: c.useBias)
            }
        }
        add("model.norm.weight", [h], .norms)
        if !c.tieWordEmbeddings { add("lm_head.weight", [c.vocabSize, h], .lmHead) }
        if c.hasLMHeadBias { add("lm_head.bias", [c.vocabSize], .biases) }
        tensors = specs
    }

    /// How many tensors the layout of `config` names, with `expertsKept(layer)` routed experts
    /// in each MoE layer; computed without building the layout. The config's sizes are bounded
    /// (`ModelConfig.maxLayers`, `maxExperts`), so this cannot overflow.
    public static func tensorCount(config c: ModelConfig, expertsKept: ((Int) -> Int)? = nil) -> Int {
        let bias = c.useBias ? 1 : 0
        func mlp(bias: Int) -> Int { 3 + 3 * bias }
        var count = 2 + (c.tieWordEmbeddings ? 0 : 1) + (c.hasLMHeadBias ? 1 : 0) // embedding, final norm, head
        for layer in 0..<c.numHiddenLayers {
            count += 2 + 4 + 4 * bias
            if c.isMoELayer(layer) {
                count += 2 + 3 * (expertsKept?(layer) ?? c.moeNumExperts)
                if c.moeNumSharedExperts > 0 { count += mlp(bias: bias) }
            } else {
                count += mlp(bias: bias)
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
        if names.contains(where: { $0.hasPrefix("ernie.") }) {
            throw FormatError("this is a PaddlePaddle checkpoint (tensor names start with 'ernie.', weights fused and transposed): "
                              + "use the model's PyTorch release instead, the hub repository whose name ends in -PT "
                              + "(for example baidu/ERNIE-4.5-21B-A3B-PT), which holds the same weights")
        }
        let names = names.filter { !isIgnored($0) }
        let present = Set(names)
        var problems: [String] = []
        let missing = tensors.filter { !$0.optional && !present.contains($0.name) }.map(\.name)
        if !missing.isEmpty { problems.append("missing tensors: " + Self.list(missing)) }
        let unexpected = names.filter { expected[$0] == nil }.sorted()
        if !unexpected.isEmpty { problems.append("unexpected tensors: " + Self.list(unexpected)) }
        for spec in tensors where present.contains(spec.name) {
            let actual = try shape(spec.name)
            // The correction bias is [1, E] on the hub; accept [E] as well.
            let ok = actual == spec.shape || (spec.shape.first == 1 && actual == Array(spec.shape.dropFirst()))
            if !ok { problems.append("tensor \(spec.name) has shape \(actual), expected \(spec.shape)") }
        }
        if !problems.isEmpty { throw FormatError(problems.joined(separator: "; ")) }
    }

    /// Multi-token-prediction heads (`model.mtp_*`, `mtp_*`) of hub checkpoints are not used
    /// for next-token generation: validation skips them and the converter carries them.
    public static func isMTP(_ name: String) -> Bool {
        name.hasPrefix("model.mtp_") || name.hasPrefix("mtp_")
    }

    /// A stored `lm_head.weight` of a tied checkpoint: transformers ties the head to the
    /// embedding and never reads it, and neither does moepack.
    public func isUnusedHead(_ name: String) -> Bool { config.tieWordEmbeddings && name == "lm_head.weight" }

    /// Names validation passes over: MTP tensors and a tied checkpoint's stored head.
    public func isIgnored(_ name: String) -> Bool { Self.isMTP(name) || isUnusedHead(name) }

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
