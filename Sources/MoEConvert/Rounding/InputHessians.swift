import CBLAS
import MoEFormat
import MoEKernels
import MoERuntime

/// The Gram matrices Σ x xᵀ of the inputs every 2-D weight of the decoder layers and the lm_head
/// (or the embeddings tied to it) reads, over
/// calibration tokens: what error-compensating rounding (GPTQ) minimises the output error
/// under. Each is kept twice: over the tokens it fits on, and over held-out ones (every fourth
/// run of 64 consecutive rows a site reads) that decide, row by row, whether the compensated
/// rounding beats round-to-nearest (docs/quantization.md).
/// Filled by one pass (`collect` or `stream`); one thread at a time (the factors are cached on first use).
public final class InputHessians: RoutingObserver, @unchecked Sendable {
    /// One input site's two Gram matrices ([width, width] row-major; only the upper triangle is
    /// accumulated, `finish()` mirrors it).
    public struct Gram: Sendable {
        public let width: Int
        public var fitTokens = 0
        public var heldOutTokens = 0
        public var fit: [Float]
        public var heldOut: [Float]
        /// Rows this site has read so far (to place the held-out runs).
        var seen = 0

        init(width: Int) {
            self.width = width
            fit = [Float](repeating: 0, count: width * width)
            heldOut = [Float](repeating: 0, count: width * width)
        }
    }

    struct Key: Hashable {
        var layer: Int
        var site: InputSite
    }

    /// Rows per run; every `heldOutEvery`-th run is held out.
    static let run = 64
    static let heldOutEvery = 4

    /// Storage index → original expert id, per MoE layer.
    private let kept: [Int: [Int]]
    private var grams: [Key: Gram] = [:]
    private var factors: [Key: [Float]?] = [:]
    /// Tokens of the calibration windows that made them.
    public private(set) var tokens = 0

    /// The embeddings are the lm_head too: they take its Gram matrix.
    private let tiedEmbeddings: Bool

    public init(kept: [Int: [Int]], tiedEmbeddings: Bool) {
        self.kept = kept
        self.tiedEmbeddings = tiedEmbeddings
    }

    /// Bytes the Gram matrices of all of `config`'s weights take (both halves): what `collect` keeps.
    public static func bytes(config: ModelConfig) -> Int {
        (0..<config.numHiddenLayers).reduce(matrixBytes(config.hiddenSize)) { $0 + layerBytes(config: config, layer: $1) }
    }

    /// Bytes of one decoder layer's Gram matrices (both halves).
    public static func layerBytes(config: ModelConfig, layer: Int) -> Int {
        let h = config.hiddenSize
        var widths = [h, config.numAttentionHeads * config.headDim]
        if config.moeLayers.contains(layer) {
            widths += Array(repeating: h, count: config.moeNumExperts)
            widths += Array(repeating: config.moeIntermediateSize, count: config.moeNumExperts)
            if config.moeNumSharedExperts > 0 { widths += [h, config.moeIntermediateSize * config.moeNumSharedExperts] }
        } else {
            widths += [h, config.intermediateSize]
        }
        return widths.reduce(0) { $0 + matrixBytes($1) }
    }

    /// The most any decoder layer's matrices take: what the streamed pass keeps at once.
    public static func largestLayerBytes(config: ModelConfig) -> Int {
        (0..<config.numHiddenLayers).map { layerBytes(config: config, layer: $0) }.max() ?? 0
    }

    private static func matrixBytes(_ width: Int) -> Int { 2 * width * width * MemoryLayout<Float>.size }

    public func observe(layer: Int, decisions: [RoutingDecision], weightedOutputNorms: [[Float]]) {}

    public func observeInputs(layer: Int, site: InputSite, rows: UnsafePointer<Float>, count: Int, width: Int) {
        let key: Key
        switch site {
        case .expert(let i), .expertDown(let i):
            guard let ids = kept[layer], i >= 0, i < ids.count else { return }
            key = Key(layer: layer, site: site == .expert(i) ? .expert(ids[i]) : .expertDown(ids[i]))
        case .lmHead:
            key = Key(layer: -1, site: .lmHead)
        default:
            key = Key(layer: layer, site: site)
        }
        var g = grams.removeValue(forKey: key) ?? Gram(width: width)
        guard g.width == width else { grams[key] = g; return }
        var t = 0
        while t < count {
            let position = g.seen + t
            let inRun = Self.run - position % Self.run
            let n = min(inRun, count - t)
            let heldOut = (position / Self.run) % Self.heldOutEvery == Self.heldOutEvery - 1
            if heldOut {
                g.heldOut.withUnsafeMutableBufferPointer { accumulate(rows + t * width, count: n, width: width, into: $0.baseAddress!) }
                g.heldOutTokens += n
            } else {
                g.fit.withUnsafeMutableBufferPointer { accumulate(rows + t * width, count: n, width: width, into: $0.baseAddress!) }
                g.fitTokens += n
            }
            t += n
        }
        g.seen += count
        grams[key] = g
    }

    /// C += Xᵀ X (upper triangle) for X [count, width].
    private func accumulate(_ x: UnsafePointer<Float>, count: Int, width: Int, into c: UnsafeMutablePointer<Float>) {
        guard count * width * width >= WeightRounding.blasWork else {
            moe_gram_update(x, Int64(count), Int64(width), c)
            return
        }
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(width), Int32(count), 1, x, Int32(width), 1, c, Int32(width))
    }

    /// Mirrors every upper triangle into the lower one; call once, after the pass.
    public func finish() { finish(grams.keys.map(\.layer)) }

    /// `finish` for one decoder layer, once the pass has gone through it (`layer` -1: lm_head).
    public func finish(layer: Int) { finish([layer]) }

    /// Gives back the memory of one decoder layer's matrices.
    public func drop(layer: Int) {
        for key in grams.keys where key.layer == layer {
            grams[key] = nil
            factors[key] = nil
        }
    }

    private func finish(_ layers: [Int]) {
        let wanted = Set(layers)
        for key in Array(grams.keys) where wanted.contains(key.layer) {
            var g = grams[key]!
            let w = g.width
            for i in 0..<w {
                for j in (i + 1)..<w {
                    g.fit[j * w + i] = g.fit[i * w + j]
                    g.heldOut[j * w + i] = g.heldOut[i * w + j]
                }
            }
            grams[key] = g
        }
    }

    /// The Gram matrices of the input `spec` (a 2-D weight of a decoder layer) reads, nil when
    /// the pass saw none.
    public func gram(for spec: TensorSpec) -> Gram? {
        guard let key = key(for: spec), let g = grams[key], g.width == spec.shape[1] else { return nil }
        return g
    }

    /// `WeightRounding.inverseCholeskyFactor` of `spec`'s fit matrix, worked out once per input
    /// (gate and up read the same one; a size plan asks for every format).
    func inverseFactor(for spec: TensorSpec, damping: Double) -> [Float]? {
        guard let key = key(for: spec), let g = grams[key], g.width == spec.shape[1] else { return nil }
        if let cached = factors[key] { return cached }
        let u = WeightRounding.inverseCholeskyFactor(g.fit, width: g.width, damping: damping)
        factors[key] = u
        return u
    }

    private func key(for spec: TensorSpec) -> Key? {
        if spec.tensorClass == .lmHead || (spec.tensorClass == .embeddings && tiedEmbeddings) { return Key(layer: -1, site: .lmHead) }
        guard let layer = spec.layer else { return nil }
        let name = spec.name
        let isDown = name.hasSuffix(".down_proj.weight")
        let isGateUp = name.hasSuffix(".gate_proj.weight") || name.hasSuffix(".up_proj.weight")
        let site: InputSite
        switch spec.tensorClass {
        case .attention:
            if name.hasSuffix(".o_proj.weight") { site = .attentionOutput; break }
            guard ["q_proj", "k_proj", "v_proj"].contains(where: { name.hasSuffix(".\($0).weight") }) else { return nil }
            site = .attention
        case .denseMLP where isGateUp: site = .denseMLP
        case .denseMLP where isDown: site = .denseMLPDown
        case .sharedExperts where isGateUp: site = .sharedExperts
        case .sharedExperts where isDown: site = .sharedExpertsDown
        case .routedExperts where isGateUp || isDown:
            guard let e = spec.expert else { return nil }
            site = isDown ? .expertDown(e) : .expert(e)
        default: return nil
        }
        return Key(layer: layer, site: site)
    }
}

extension InputHessians {
    /// Runs `windows` through the unquantized checkpoint layer by layer and returns the Gram
    /// matrices of every product's inputs (`bytes(config:)` of them).
    public static func collect(checkpoint: Checkpoint, windows: [[Int32]], memoryBudget: Int = Calibrator.defaultMemoryBudget,
                               progress: ((LayerPassProgress) -> Void)? = nil) throws -> InputHessians {
        let hessians = try pass(checkpoint: checkpoint, windows: windows, memoryBudget: memoryBudget, progress: progress, layerDone: nil)
        hessians.finish()
        return hessians
    }

    /// The same pass keeping one layer's matrices at a time: once every window has gone through
    /// decoder layer L, `layerDone(L, hessians)` sees its matrices (finished), which are then
    /// dropped; when `stream` returns, the lm_head's are there, finished. Every window's hidden
    /// states are kept at once (tokens × hidden × 4 bytes).
    public static func stream(checkpoint: Checkpoint, windows: [[Int32]], progress: ((LayerPassProgress) -> Void)? = nil,
                              layerDone: @escaping (Int, InputHessians) throws -> Void) throws -> InputHessians {
        try pass(checkpoint: checkpoint, windows: windows, memoryBudget: Int.max, progress: progress, layerDone: layerDone)
    }

    private static func pass(checkpoint: Checkpoint, windows: [[Int32]], memoryBudget: Int, progress: ((LayerPassProgress) -> Void)?,
                             layerDone: ((Int, InputHessians) throws -> Void)?) throws -> InputHessians {
        let weights = try CheckpointWeights(checkpoint: checkpoint)
        let model = try ErnieModel(weights: weights)
        let c = checkpoint.config
        let hessians = InputHessians(kept: Dictionary(uniqueKeysWithValues: c.moeLayers.map { ($0, weights.keptExperts(layer: $0)) }),
                                     tiedEmbeddings: c.tieWordEmbeddings)
        hessians.tokens = windows.reduce(0) { $0 + $1.count }
        try model.observeLayerByLayer(windows, observer: hessians, memoryBudget: memoryBudget, progress: progress,
                                      layerDone: layerDone.map { done in
                                          { layer in
                                              hessians.finish(layer: layer)
                                              try done(layer, hessians)
                                              hessians.drop(layer: layer)
                                          }
                                      })
        if layerDone != nil { hessians.finish(layer: -1) }
        return hessians
    }
}
