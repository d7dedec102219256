import Foundation

/// What `moepack inspect` reports about a checkpoint directory.
public struct CheckpointSummary: Codable, Sendable {
    public struct LayerKind: Codable, Sendable {
        public let index: Int
        public let kind: String          // "dense" or "moe"
        public let experts: Int          // routed experts (0 for dense)
        public let sharedExperts: Int
    }

    public let path: String
    public let kind: String              // "checkpoint"
    public let architecture: String
    public let hiddenSize: Int
    public let layers: Int
    public let vocabSize: Int
    public let attentionHeads: Int
    public let keyValueHeads: Int
    public let headDim: Int
    public let expertsPerToken: Int
    public let parametersTotal: Int
    public let parametersActivePerToken: Int
    public let parametersByClass: [String: Int]
    public let dtypes: [String: Int]     // tensor count per dtype
    public let sizeOnDisk: Int
    public let shards: Int
    public let layerKinds: [LayerKind]
    /// Multi-token-prediction tensors: not used to generate, carried into bundles unmodified.
    public let mtpTensors: Int
    /// Stored tensors nothing reads (a tied checkpoint's `lm_head.weight`), and absent optional
    /// ones that take their default (a zero router correction bias).
    public let notes: [String]

    public init(checkpoint: Checkpoint) throws {
        let c = checkpoint.config
        let layout = ModelLayout(config: c)
        try layout.validate(names: checkpoint.tensorNames) { try checkpoint.info($0).shape }
        path = checkpoint.directory.path
        kind = "checkpoint"
        architecture = c.architecture.rawValue
        hiddenSize = c.hiddenSize
        layers = c.numHiddenLayers
        vocabSize = c.vocabSize
        attentionHeads = c.numAttentionHeads
        keyValueHeads = c.numKeyValueHeads
        headDim = c.headDim
        expertsPerToken = c.moeK
        let counts = layout.parameterCounts
        parametersTotal = counts.total
        parametersActivePerToken = counts.activePerToken
        parametersByClass = Dictionary(grouping: layout.tensors, by: \.tensorClass.rawValue)
            .mapValues { $0.reduce(0) { $0 + $1.elementCount } }
        var dtypes: [String: Int] = [:]
        for name in checkpoint.tensorNames { dtypes[try checkpoint.info(name).dtype.rawValue, default: 0] += 1 }
        self.dtypes = dtypes
        sizeOnDisk = checkpoint.sizeOnDisk
        shards = checkpoint.shards.count
        let names = checkpoint.tensorNames
        mtpTensors = names.count(where: c.architecture.family.isCarried)
        var notes: [String] = []
        if names.contains(where: layout.isUnusedHead) {
            notes.append("lm_head.weight is stored but unused: the head is tied to the embedding (as transformers does)")
        }
        let absent = layout.tensors.filter { $0.optional && !checkpoint.contains($0.name) }
        if !absent.isEmpty {
            notes.append("\(absent.count) MoE layer\(absent.count == 1 ? " has" : "s have") no e_score_correction_bias: routing uses a zero bias")
        }
        self.notes = notes
        layerKinds = (0..<c.numHiddenLayers).map { l in
            let moe = c.isMoELayer(l)
            return LayerKind(index: l, kind: moe ? "moe" : "dense", experts: moe ? c.moeNumExperts : 0,
                             sharedExperts: moe ? c.moeNumSharedExperts : 0)
        }
    }

    /// A short human-readable report.
    public var text: String {
        var lines = [
            "checkpoint   \(path)",
            "architecture \(architecture)",
            "shape        hidden \(hiddenSize), \(layers) layers, \(attentionHeads) heads (\(keyValueHeads) kv, head_dim \(headDim)), vocab \(vocabSize)",
            "parameters   \(Self.count(parametersTotal)) total, \(Self.count(parametersActivePerToken)) active per token",
            "on disk      \(Self.bytes(sizeOnDisk)) in \(shards) file\(shards == 1 ? "" : "s"), dtypes " +
                dtypes.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: " "),
        ]
        let moe = layerKinds.filter { $0.kind == "moe" }
        if let first = moe.first {
            lines.append("experts      \(first.experts) routed + \(first.sharedExperts) shared per MoE layer, top-\(expertsPerToken)")
        }
        lines.append("layers       " + layerKinds.map { $0.kind == "moe" ? "M" : "D" }.joined() + "  (D dense, M mixture of experts)")
        if mtpTensors > 0 {
            lines.append("mtp          \(mtpTensors) multi-token-prediction tensors, not used to generate; carried into bundles unmodified")
        }
        for note in notes { lines.append("note         " + note) }
        lines.append("by class     " + parametersByClass.sorted { $0.key < $1.key }.map { "\($0.key) \(Self.count($0.value))" }.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }

    static func count(_ n: Int) -> String {
        switch n {
        case 1_000_000_000...: String(format: "%.2fB", Double(n) / 1e9)
        case 1_000_000...: String(format: "%.2fM", Double(n) / 1e6)
        case 1_000...: String(format: "%.1fK", Double(n) / 1e3)
        default: "\(n)"
        }
    }

    public static func bytes(_ n: Int) -> String {
        switch n {
        case (1 << 30)...: String(format: "%.2f GiB", Double(n) / Double(1 << 30))
        case (1 << 20)...: String(format: "%.2f MiB", Double(n) / Double(1 << 20))
        case (1 << 10)...: String(format: "%.1f KiB", Double(n) / Double(1 << 10))
        default: "\(n) B"
        }
    }
}
