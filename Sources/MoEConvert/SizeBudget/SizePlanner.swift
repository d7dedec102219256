import Foundation
import MoEFormat
import MoERuntime
import MoETokenizer

/// The size-budget solver's front half: what each choice of each weight costs in bytes and
/// what it costs in KL divergence (docs/size-targets.md).
///
/// A unit is one routed expert (its gate, up and down together) or one other 2-D weight. A
/// choice's price is estimated as `sensitivity(group) × error(unit, choice)`:
/// - error: the unit's relative squared weight error under the format, each input column
///   weighted by its calibration importance (sampled rows, quantized as the converter does);
///   for an expert, times its share of its layer's routed output energy (count × mean output
///   norm², from calibration), and 1 × that share when pruned;
/// - sensitivity: measured per group (a layer's routed experts, a layer's attention, shared
///   experts or dense MLP, the embeddings, the lm_head) by quantizing the whole group to a
///   probe format, or pruning a quarter of a layer's least used experts, and scoring the KL
///   divergence against the unquantized model on the price text.
public struct SizePlanner {
    /// Formats a routed expert may take (besides being pruned), and every other weight.
    public static let expertCandidates: [WeightFormat] = [.int8, .q4g128, .q4g64, .q4g32, .nl4g32, .q3g64, .q3g32, .q2g64, .q2g32]
    public static let otherCandidates: [WeightFormat] = [.int8, .q4g128, .q4g64, .q4g32, .nl4g32]
    /// What the projections of attention, dense MLPs and shared experts may take besides: the
    /// embeddings and lm_head keep 4 bits and more.
    public static let projectionLowBitCandidates: [WeightFormat] = [.q3g64, .q3g32]
    static let projectionClasses: Set<TensorClass> = [.attention, .denseMLP, .sharedExperts]
    /// Rows of each tensor quantized to estimate its error.
    static let sampledRows = 128

    public struct Progress: Sendable {
        public var stage: String
        public var done: Int
        public var total: Int
    }

    struct Unit {
        var name: String
        var layer: Int?
        var expert: Int?
        var tensorClass: TensorClass
        var tensors: [TensorSpec]
        /// Sensitivity group key.
        var group: String
        /// Weight of the unit within its group (expert: output-energy share; other: parameter share).
        var share: Double
        var options: [(choice: WeightFormat?, bytes: Int, error: Double)]
    }

    let checkpoint: Checkpoint
    let config: ModelConfig
    let stats: CalibrationStats
    let importance: ImportanceMap?
    /// How the converter will round: the errors and probes use the same.
    let rounding: WeightRounding
    let reader: TensorReader
    var units: [Unit] = []
    /// Bytes of the tensors the plan does not choose for (norms, router, biases, carried).
    public private(set) var fixedBytes = 0
    public private(set) var parameters = 0
    private var sensitivity: [String: Double] = [:]
    private var pruneSensitivity: [String: Double] = [:]
    private var priceTokens = 0

    public init(checkpoint: Checkpoint, stats: CalibrationStats, importance: ImportanceMap?, hessians: InputHessians? = nil) throws {
        self.checkpoint = checkpoint
        self.config = checkpoint.config
        self.stats = stats
        self.importance = importance
        self.rounding = WeightRounding(importance: importance, hessians: hessians)
        self.reader = TensorReader(checkpoint: checkpoint)
        try stats.checkApplies(to: ModelIdentity.compute(CheckpointWeights(checkpoint: checkpoint)), config: config)
        try buildUnits()
    }

    // MARK: Units and their byte costs

    private mutating func buildUnits() throws {
        let layout = ModelLayout(config: config)
        try layout.validate(names: checkpoint.tensorNames) { try checkpoint.info($0).shape }
        var experts: [String: [TensorSpec]] = [:]
        var order: [String] = []
        for spec in layout.tensors where !(spec.optional && !checkpoint.contains(spec.name)) {
            parameters += spec.elementCount
            let is2D = spec.shape.count == 2 && !spec.isVector
            guard is2D, Profile.quantizableClasses.contains(spec.tensorClass) else {
                fixedBytes += spec.elementCount * 4
                continue
            }
            if spec.tensorClass == .routedExperts, let l = spec.layer, let e = spec.expert {
                let key = "layer \(l) expert \(e)"
                if experts[key] == nil { order.append(key) }
                experts[key, default: []].append(spec)
            } else {
                order.append(spec.name)
                experts[spec.name] = [spec]
            }
        }
        for name in checkpoint.tensorNames.filter(config.architecture.family.isCarried) {
            let info = try checkpoint.info(name)
            fixedBytes += info.shape.count == 2 && info.dtype == .bf16 ? info.elementCount * 2 : info.elementCount * 4
        }
        for key in order {
            let specs = experts[key]!
            let first = specs[0]
            let isExpert = first.tensorClass == .routedExperts
            let candidates = isExpert ? Self.expertCandidates
                : Self.otherCandidates + (Self.projectionClasses.contains(first.tensorClass) ? Self.projectionLowBitCandidates : [])
            var options: [(WeightFormat?, Int, Double)] = []
            for f in candidates {
                let sizes = specs.map { f.matrixBytes(rows: $0.shape[0], cols: $0.shape[1]) }
                guard sizes.allSatisfy({ $0 != nil }) else { continue }
                options.append((f, sizes.reduce(0) { $0 + $1! }, 0))
            }
            if isExpert { options.append((nil, 0, 1)) }
            let group = isExpert ? "layer \(first.layer!) routed_experts"
                : first.layer.map { "layer \($0) \(first.tensorClass.rawValue)" } ?? first.tensorClass.rawValue
            units.append(Unit(name: isExpert ? key : first.name, layer: first.layer, expert: first.expert,
                              tensorClass: first.tensorClass, tensors: specs, group: group, share: 0,
                              options: options.map { (choice: $0.0, bytes: $0.1, error: $0.2) }))
        }
        // Shares: experts by output energy within their layer, other weights by parameters.
        var groupTotals: [String: Double] = [:]
        for i in units.indices {
            units[i].share = weightOfUnit(units[i])
            groupTotals[units[i].group, default: 0] += units[i].share
        }
        for i in units.indices { units[i].share /= max(groupTotals[units[i].group]!, .leastNormalMagnitude) }
    }

    private func weightOfUnit(_ unit: Unit) -> Double {
        guard unit.tensorClass == .routedExperts, let l = unit.layer, let e = unit.expert, let s = stats.layer(l) else {
            return Double(unit.tensors.reduce(0) { $0 + $1.elementCount })
        }
        let energies = zip(s.count, s.outputNormMean).map { Double($0) * $1 * $1 }
        let mean = energies.reduce(0, +) / Double(max(energies.count, 1))
        // An expert no calibration token reached still costs a little: held-out text may route to it.
        return max(energies[e], 1e-3 * mean, .leastNormalMagnitude)
    }

    /// Bytes of the smallest plan the candidates reach.
    public func smallestBytes() -> Int {
        BudgetSolver.smallest(solverUnits(), fixedBytes: fixedBytes, pruneLimit: pruneLimits())
    }

    // MARK: Errors and sensitivities

    /// Estimates each option's relative weight error and measures each group's sensitivity on
    /// `windows` (token ids of the price text).
    public mutating func price(windows: [[Int32]], progress: ((Progress) -> Void)? = nil) throws {
        for i in units.indices {
            for o in units[i].options.indices where units[i].options[o].choice != nil {
                units[i].options[o].error = try relativeError(units[i].tensors, format: units[i].options[o].choice!)
            }
            progress?(Progress(stage: "weight errors", done: i + 1, total: units.count))
        }
        let base = try CheckpointWeights(checkpoint: checkpoint)
        let reference = try ErnieModel(weights: base)
        var probes: [(key: String, prune: Bool, model: ErnieModel, error: Double)] = []
        for group in Set(units.map(\.group)).sorted() {
            let members = units.indices.filter { units[$0].group == group }
            // 4-bit, and for routed experts 3- and 2-bit: KL grows faster than the weight error
            // at fewer bits, so each bit width has its own sensitivity.
            let tensorClass = units[members[0]].tensorClass
            for bits in tensorClass == .routedExperts ? [4, 3, 2] : (Self.projectionClasses.contains(tensorClass) ? [4, 3] : [4]) {
                guard let probe = probeFormat(members, bits: bits) else { continue }
                var replaced: [String: any MatrixOperator] = [:]
                var error = 0.0
                for u in members {
                    for spec in units[u].tensors { replaced[spec.name] = try quantized(spec, format: probe) }
                    error += units[u].share * units[u].options.first { $0.choice == probe }!.error
                }
                probes.append((Self.sensitivityKey(group, bits: bits), false,
                               try ErnieModel(weights: OverlayWeights(base: base, replaced: replaced)), error))
            }
            if units[members[0]].tensorClass == .routedExperts, let layer = units[members[0]].layer {
                let limit = pruneLimits()[layer] ?? 0
                let ranked = members.sorted { (units[$0].share, $0) < (units[$1].share, $1) }
                let pruned = Array(ranked.prefix(min(limit, max(1, config.moeNumExperts / 4))))
                guard !pruned.isEmpty else { continue }
                let keptIDs = members.filter { !pruned.contains($0) }.map { units[$0].expert! }.sorted()
                let share = pruned.reduce(0) { $0 + units[$1].share }
                probes.append((group, true, try ErnieModel(weights: OverlayWeights(base: base, kept: [layer: keptIDs])), share))
            }
        }
        let tokens = windows.flatMap { $0 }
        let context = windows.map(\.count).max() ?? 1
        let reports = try Evaluator.evaluate(models: probes.map(\.model), tokens: tokens, context: context, reference: reference) { done, total in
            progress?(Progress(stage: "sensitivities", done: done, total: total))
        }
        priceTokens = tokens.count
        for (probe, report) in zip(probes, reports) {
            let kl = max(report.reference?.meanKLDivergence ?? 0, 0)
            let s = probe.error > 0 ? kl / probe.error : 0
            if probe.prune { pruneSensitivity[probe.key] = s } else { sensitivity[probe.key] = s }
        }
    }

    /// The price of option `o` of unit `u`.
    func price(_ u: Int, _ o: Int) -> Double {
        let unit = units[u], option = unit.options[o], four = sensitivity[unit.group] ?? 0
        let s: Double
        if let f = option.choice {
            let bits = Int(f.traits.bits)
            s = bits < 4 ? sensitivity[Self.sensitivityKey(unit.group, bits: bits)] ?? four : four
        } else {
            s = pruneSensitivity[unit.group] ?? four
        }
        return s * unit.share * option.error
    }

    /// A group's sensitivity entry: the group's name for 4 bits and more, with the bits below.
    static func sensitivityKey(_ group: String, bits: Int) -> String { bits >= 4 ? group : "\(group) \(bits)-bit" }

    /// The probe quantization of a group at `bits`: its lowest-byte format of that width (and of
    /// the uniform grid) that every member takes.
    private func probeFormat(_ members: [Int], bits: Int) -> WeightFormat? {
        let formats: [WeightFormat] = switch bits {
        case 4: [.q4g128, .q4g64, .q4g32]
        case 3: [.q3g64, .q3g32]
        default: [.q2g64, .q2g32]
        }
        return formats.first { f in members.allSatisfy { u in units[u].options.contains { $0.choice == f } } }
    }

    private func importanceOf(_ spec: TensorSpec) -> [Float]? {
        guard let imp = importance?.importance(for: spec, cols: spec.shape[1]), imp.contains(where: { $0 > 0 }) else { return nil }
        return imp
    }

    /// Σ imp (w − q)² / Σ imp w² over sampled rows of every tensor (imp = 1 without statistics);
    /// with input Gram matrices, the output error Σ δ H δᵀ / Σ w H wᵀ (H over all their tokens).
    func relativeError(_ specs: [TensorSpec], format: WeightFormat) throws -> Double {
        var err = 0.0, norm = 0.0
        var scratch: [UInt8] = []
        for spec in specs {
            let rows = spec.shape[0], cols = spec.shape[1]
            let sample = min(rows, Self.sampledRows)
            let imp = importanceOf(spec)
            var w = [Float](repeating: 0, count: sample * cols)
            try w.withUnsafeMutableBufferPointer { buf in
                for i in 0..<sample {
                    let r = i * rows / sample
                    try reader.read(spec.name, start: r * cols, count: cols, into: buf.baseAddress! + i * cols, scratch: &scratch)
                }
            }
            let bytes = try rounding.quantize(spec, values: w, rows: sample, cols: cols, format: format).bytes
            if let g = rounding.hessians?.gram(for: spec), g.fitTokens + g.heldOutTokens > 0 {
                let h = zip(g.fit, g.heldOut).map { $0 + $1 }
                err += try WeightRounding.rowErrors(w, bytes: bytes, rows: sample, cols: cols, format: format, hessian: h).reduce(0, +)
                norm += WeightRounding.rowQuadratic(w, rows: sample, cols: cols, hessian: h).reduce(0, +)
                continue
            }
            let q = try QuantizedMatrix(copying: bytes, rows: sample, cols: cols, format: format)
            let d = q.dequantize()
            for i in 0..<sample {
                for j in 0..<cols {
                    let weight = Double(imp?[j] ?? 1)
                    let a = Double(w[i * cols + j]), b = Double(d[i * cols + j])
                    err += weight * (a - b) * (a - b)
                    norm += weight * a * a
                }
            }
        }
        return norm > 0 ? err / norm : 0
    }

    /// Tensor `spec` quantized to `format` as the converter would store it.
    func quantized(_ spec: TensorSpec, format: WeightFormat) throws -> QuantizedMatrix {
        let rows = spec.shape[0], cols = spec.shape[1]
        var w = [Float](repeating: 0, count: rows * cols)
        var scratch: [UInt8] = []
        try w.withUnsafeMutableBufferPointer { try reader.read(spec.name, start: 0, count: rows * cols, into: $0.baseAddress!, scratch: &scratch) }
        let bytes = try rounding.quantize(spec, values: w, rows: rows, cols: cols, format: format).bytes
        return try QuantizedMatrix(copying: bytes, rows: rows, cols: cols, format: format)
    }

    // MARK: Solving

    /// At most E − k experts of a MoE layer may be pruned (the top-k needs k).
    func pruneLimits() -> [Int: Int] {
        Dictionary(uniqueKeysWithValues: config.moeLayers.map { ($0, config.moeNumExperts - config.moeK) })
    }

    func solverUnits() -> [BudgetSolver.Unit] {
        units.indices.map { u in
            BudgetSolver.Unit(options: units[u].options.indices.map { o in
                BudgetSolver.Option(bytes: units[u].options[o].bytes, price: price(u, o), prunes: units[u].options[o].choice == nil)
            }, pruneGroup: units[u].tensorClass == .routedExperts ? units[u].layer : nil)
        }
    }

    /// The plan for `target`; `price(windows:)` must have run.
    public func plan(_ target: SizeTarget) throws -> SizePlan {
        let budget = target.bytes(parameters: parameters)
        let solution: BudgetSolver.Solution
        do {
            solution = try BudgetSolver.solve(solverUnits(), fixedBytes: fixedBytes, budget: budget, pruneLimit: pruneLimits())
        } catch let e as BudgetSolver.Infeasible {
            throw ProfileError(String(format: "a target of %@ (%ld bytes) is below the smallest this model reaches: %ld bytes (%.3f bits/weight), with %ld experts per MoE layer pruned and every other weight at its smallest format",
                                      target.text, budget, e.smallest, Double(e.smallest * 8) / Double(parameters),
                                      config.moeNumExperts - config.moeK))
        }
        var formats: [String: WeightFormat] = [:]
        var kept: [Int: [Int]] = [:]
        var planned: [SizePlan.Unit] = []
        for (u, o) in solution.choices.enumerated() {
            let unit = units[u], option = unit.options[o]
            if let f = option.choice {
                for spec in unit.tensors { formats[spec.name] = f }
                if let l = unit.layer, let e = unit.expert { kept[l, default: []].append(e) }
            }
            planned.append(SizePlan.Unit(name: unit.name, layer: unit.layer, expert: unit.expert, tensorClass: unit.tensorClass,
                                         choice: option.choice?.rawValue ?? "pruned", bytes: option.bytes, price: price(u, o)))
        }
        let pruning = kept.filter { $0.value.count < config.moeNumExperts }
            .reduce(into: [String: [Int]]()) { $0[String($1.key)] = $1.value.sorted() }
        return SizePlan(target: target.text, targetBytes: budget, weightBytes: solution.bytes, parameters: parameters,
                        predictedKL: solution.price, priceTokens: priceTokens, formats: formats, kept: pruning, units: planned)
    }
}

/// A checkpoint's weights with some matrices replaced and some experts pruned: the models the
/// size solver scores.
struct OverlayWeights: WeightSource {
    let base: any WeightSource
    var replaced: [String: any MatrixOperator] = [:]
    var kept: [Int: [Int]] = [:]

    var config: ModelConfig { base.config }
    func matrix(_ name: String, rows: Int, cols: Int) throws -> any MatrixOperator {
        if let m = replaced[name] { return m }
        return try base.matrix(name, rows: rows, cols: cols)
    }
    func vector(_ name: String, count: Int) throws -> [Float] { try base.vector(name, count: count) }
    func keptExperts(layer: Int) -> [Int] { kept[layer] ?? base.keptExperts(layer: layer) }
    func contains(_ name: String) -> Bool { base.contains(name) }
}

extension SizePlanner {
    /// Default number of price-text tokens and their window length.
    public static let defaultPriceTokens = 4096
    public static let defaultPriceContext = 256

    /// Token windows of a price text (plain text or JSONL, as `calibrate` reads it).
    public static func windows(checkpoint: Checkpoint, data: URL, maxTokens: Int = defaultPriceTokens,
                               context: Int = defaultPriceContext) throws -> [[Int32]] {
        let documents = try CalibrationData.load(data)
        let tokenizer = try Tokenizer(directory: checkpoint.directory)
        return try Calibrator.windows(documents.map { try Calibration.tokens($0, tokenizer) }, context: context, maxTokens: maxTokens)
    }
}

extension SizePlanner {
    /// One choice of one unit priced two ways: by the estimate the solver uses, and by
    /// measuring the KL divergence of the model with only that choice made.
    public struct PriceCheck: Sendable, Codable {
        public var unit: String
        public var choice: String
        public var estimated: Double
        public var measured: Double
    }

    /// Measures every choice of every unit (one model each) on `windows`; for checking the
    /// estimator on small models: it runs units × choices models.
    public func measureUnitPrices(windows: [[Int32]], progress: ((Progress) -> Void)? = nil) throws -> [PriceCheck] {
        let base = try CheckpointWeights(checkpoint: checkpoint)
        let reference = try ErnieModel(weights: base)
        var models: [ErnieModel] = []
        var checks: [PriceCheck] = []
        for (u, unit) in units.enumerated() {
            for (o, option) in unit.options.enumerated() {
                var overlay = OverlayWeights(base: base)
                if let f = option.choice {
                    for spec in unit.tensors { overlay.replaced[spec.name] = try quantized(spec, format: f) }
                } else if let l = unit.layer, let e = unit.expert {
                    guard config.moeNumExperts > config.moeK else { continue }
                    overlay.kept[l] = (0..<config.moeNumExperts).filter { $0 != e }
                }
                models.append(try ErnieModel(weights: overlay))
                checks.append(PriceCheck(unit: unit.name, choice: option.choice?.rawValue ?? "pruned", estimated: price(u, o), measured: 0))
            }
            progress?(Progress(stage: "models", done: u + 1, total: units.count))
        }
        let reports = try Evaluator.evaluate(models: models, tokens: windows.flatMap { $0 }, context: windows.map(\.count).max() ?? 1,
                                             reference: reference) { done, total in
            progress?(Progress(stage: "measuring", done: done, total: total))
        }
        for i in checks.indices { checks[i].measured = reports[i].reference?.meanKLDivergence ?? 0 }
        return checks
    }

    /// Spearman's rank correlation (average ranks for ties).
    public static func rankCorrelation(_ a: [Double], _ b: [Double]) -> Double {
        func ranks(_ v: [Double]) -> [Double] {
            let order = v.indices.sorted { v[$0] < v[$1] }
            var r = [Double](repeating: 0, count: v.count)
            var i = 0
            while i < order.count {
                var j = i
                while j + 1 < order.count && v[order[j + 1]] == v[order[i]] { j += 1 }
                for k in i...j { r[order[k]] = Double(i + j) / 2 }
                i = j + 1
            }
            return r
        }
        let ra = ranks(a), rb = ranks(b)
        let n = Double(a.count)
        guard n > 1 else { return 0 }
        let ma = ra.reduce(0, +) / n, mb = rb.reduce(0, +) / n
        var cov = 0.0, va = 0.0, vb = 0.0
        for i in ra.indices {
            cov += (ra[i] - ma) * (rb[i] - mb)
            va += (ra[i] - ma) * (ra[i] - ma)
            vb += (rb[i] - mb) * (rb[i] - mb)
        }
        return va > 0 && vb > 0 ? cov / (va * vb).squareRoot() : 0
    }
}
