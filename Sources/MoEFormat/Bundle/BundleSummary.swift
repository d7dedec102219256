import Foundation

/// What `moepack inspect` (and `convert --json`) reports about a bundle.
public struct BundleSummary: Codable, Sendable {
    public struct ClassFormat: Codable, Sendable {
        public let tensorClass: String
        public let format: String
        public let tensors: Int
        public let parameters: Int
        /// Bytes after decompression (what the runtime holds).
        public let bytes: Int
        /// Bytes in the file.
        public let storedBytes: Int
        public let bitsPerWeight: Double
    }

    public struct LayerExperts: Codable, Sendable {
        public let layer: Int
        public let kept: Int
        public let total: Int
        /// Original ids of the kept experts when the layer was pruned.
        public let keptIDs: [Int]?
    }

    public let path: String
    public let kind: String               // "bundle"
    public let formatVersion: Int
    public let fileSize: Int
    public let architecture: String
    public let layers: Int
    public let profile: String
    public let tensors: Int
    public let parameters: Int
    /// Stored bits per weight (scales included) over all tensors, and over routed experts.
    public let bitsPerWeight: Double
    /// Over the parameters of the model before pruning (what `--target-bpw` counts); nil when
    /// nothing was pruned.
    public let unprunedBitsPerWeight: Double?
    public let expertBitsPerWeight: Double?
    /// Decompressed bytes / stored bytes over zstd payloads (1 when nothing is compressed).
    public let zstdRatio: Double
    public let compressedTensors: Int
    public let byClassAndFormat: [ClassFormat]
    public let experts: [LayerExperts]
    public let files: [String]
    public let provenance: Provenance
    /// Sections whose checksums were checked by `--verify` (nil when not asked).
    public var verifiedSections: Int?

    public init(bundle: BundleFile) {
        let m = bundle.manifest
        let c = bundle.config
        path = bundle.path
        kind = "bundle"
        formatVersion = m.formatVersion
        fileSize = bundle.fileSize
        architecture = c.architecture.rawValue
        layers = c.numHiddenLayers
        profile = m.profile.name
        tensors = m.tensors.count
        var groups: [String: (cls: String, fmt: String, n: Int, params: Int, raw: Int, stored: Int)] = [:]
        var params = 0, rawBytes = 0, expertParams = 0, expertBytes = 0, zRaw = 0, zStored = 0, compressed = 0
        for t in m.tensors {
            let key = "\(t.tensorClass.rawValue)/\(t.format.rawValue)"
            var g = groups[key] ?? (t.tensorClass.rawValue, t.format.rawValue, 0, 0, 0, 0)
            g.n += 1
            g.params += t.elementCount
            g.raw += t.payload.rawLength
            g.stored += t.payload.length
            groups[key] = g
            params += t.elementCount
            rawBytes += t.payload.rawLength
            if t.tensorClass == .routedExperts {
                expertParams += t.elementCount
                expertBytes += t.payload.rawLength
            }
            if t.payload.compression == .zstd {
                zRaw += t.payload.rawLength
                zStored += t.payload.length
                compressed += 1
            }
        }
        parameters = params
        bitsPerWeight = params > 0 ? Double(rawBytes * 8) / Double(params) : 0
        let prunedExperts = c.moeLayers.reduce(0) { $0 + c.moeNumExperts - (bundle.keptExperts(layer: $1)?.count ?? c.moeNumExperts) }
        let unpruned = params + prunedExperts * 3 * c.hiddenSize * c.moeIntermediateSize
        unprunedBitsPerWeight = prunedExperts > 0 && unpruned > 0 ? Double(rawBytes * 8) / Double(unpruned) : nil
        expertBitsPerWeight = expertParams > 0 ? Double(expertBytes * 8) / Double(expertParams) : nil
        zstdRatio = zStored > 0 ? Double(zRaw) / Double(zStored) : 1
        compressedTensors = compressed
        byClassAndFormat = groups.keys.sorted().map { key in
            let g = groups[key]!
            return ClassFormat(tensorClass: g.cls, format: g.fmt, tensors: g.n, parameters: g.params, bytes: g.raw,
                               storedBytes: g.stored, bitsPerWeight: g.params > 0 ? Double(g.raw * 8) / Double(g.params) : 0)
        }
        experts = (0..<c.numHiddenLayers).filter { c.isMoELayer($0) }.map { layer in
            let kept = bundle.keptExperts(layer: layer)
            return LayerExperts(layer: layer, kept: kept?.count ?? c.moeNumExperts, total: c.moeNumExperts, keptIDs: kept)
        }
        files = m.files.map(\.name)
        provenance = m.provenance
        verifiedSections = nil
    }

    public var text: String {
        func mb(_ b: Int) -> String { String(format: "%.2f MB", Double(b) / 1_000_000) }
        var lines = [
            "bundle        \(path)",
            "format        version \(formatVersion), \(mb(fileSize))",
            "model         \(architecture), \(layers) layers, \(parameters) parameters in \(tensors) tensors",
            "profile       \(profile)",
            String(format: "bits/weight   %.3f overall", bitsPerWeight)
                + (expertBitsPerWeight.map { String(format: ", %.3f routed experts", $0) } ?? "")
                + (unprunedBitsPerWeight.map { String(format: "; %.3f over the parameters before pruning", $0) } ?? ""),
            compressedTensors > 0
                ? String(format: "zstd          %d tensors, ratio %.3f", compressedTensors, zstdRatio)
                : "zstd          none",
            "",
            "class            format      tensors    parameters        bytes       stored  bits/w",
        ]
        for g in byClassAndFormat {
            lines.append(g.tensorClass.padding(toLength: 16, withPad: " ", startingAt: 0) + " "
                + g.format.padding(toLength: 10, withPad: " ", startingAt: 0)
                + String(format: " %8d %13d %12d %12d %7.3f", g.tensors, g.parameters, g.bytes, g.storedBytes, g.bitsPerWeight))
        }
        if !experts.isEmpty {
            lines.append("")
            lines.append("experts kept  " + experts.map { "layer \($0.layer): \($0.kept)/\($0.total)" }.joined(separator: ", "))
            for e in experts { if let ids = e.keptIDs { lines.append("  layer \(e.layer) keeps \(ids)") } }
        }
        if !files.isEmpty { lines.append("files         " + files.joined(separator: ", ")) }
        lines.append("")
        lines.append("provenance    \(provenance.tool) \(provenance.toolVersion); "
            + provenance.parameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))
        for f in provenance.sourceFiles { lines.append("  \(f.name)  \(f.bytes) bytes  sha256 \(f.sha256)") }
        if let verifiedSections { lines.append("verified      \(verifiedSections) payload checksums OK") }
        return lines.joined(separator: "\n")
    }
}
