#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MoEFormat
import MoEKernels

/// Options of a compressed-tensors export.
public struct CompressedTensorsOptions: Sendable {
    /// The model dtype: the float weights and every scale are written in it.
    public var dtype: DType = .f16
    /// What to do with pruned experts (nil: drop when every layer keeps the same count, else mask).
    public var pruned: PrunedExpertsMode?
    /// Write linear weights in formats pack-quantized cannot hold (nl4g32, asymmetric int4) as
    /// floats of `dtype` instead of refusing the bundle.
    public var dequantizeUnsupported = false
    /// Largest safetensors shard, in bytes (one tensor larger than this gets a shard of its own).
    public var shardBytes = 5_000_000_000
    public var force = false
    /// false: every weight decoded to `dtype`, no quantization block (a plain checkpoint of
    /// the values moepack decodes, `export --to safetensors`).
    public var packQuantized = true
    public init() {}
}

/// What a compressed-tensors export wrote and what it changed.
public struct CompressedTensorsReport: Sendable {
    public var tensorCount = 0
    public var shardCount = 0
    public var bytes = 0
    /// Scheme label ("int4 group 32", "int8 per channel", "float16") → linear layers in it.
    public var schemes: [String: Int] = [:]
    public var notes: [String] = []
    /// The largest relative change of a scale written in the export dtype (0: all exact).
    public var maxScaleRounding = 0.0
    /// The largest relative change of a float weight written in the export dtype.
    public var maxFloatRounding = 0.0
    public var exact: Bool { maxScaleRounding == 0 && maxFloatRounding == 0 && !notes.contains { $0.hasPrefix("rounded") } }

    public var text: String {
        var lines = ["wrote \(tensorCount) tensors in \(shardCount) shard\(shardCount == 1 ? "" : "s"), \(bytes) bytes"
                     + (schemes.isEmpty ? "" : "; linear layers: " + schemes.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))]
        lines += notes
        if maxScaleRounding > 0 { lines.append(String(format: "scales rounded to the export dtype: at most %.3g relative", maxScaleRounding)) }
        if maxFloatRounding > 0 { lines.append(String(format: "float weights rounded to the export dtype: at most %.3g relative", maxFloatRounding)) }
        if exact { lines.append("every weight is exact: the values moepack decodes") }
        return lines.joined(separator: "\n")
    }
}

/// Writes a bundle as a Hugging Face model folder in compressed-tensors' `pack-quantized`
/// format, which vLLM and transformers load (docs/export.md): config.json with its
/// `quantization_config`, safetensors shards with an index, and the carried tokenizer and
/// generation files. Tensor names are the checkpoint's, so every family exports.
public enum CompressedTensorsExporter {
    /// One tensor of the output and how to produce its bytes.
    struct Item {
        var entry: SafeTensorsWriter.Entry
        var bytes: () throws -> [UInt8]
    }

    public static func export(bundle: BundleFile, to outputPath: String, options: CompressedTensorsOptions = .init()) throws
        -> CompressedTensorsReport {
        let c = bundle.config, names = c.names
        if FileManager.default.fileExists(atPath: outputPath) && !options.force {
            throw FormatError("\(outputPath) exists (pass --force to replace it)")
        }
        try bundle.checkPlausibleConfig()
        var report = CompressedTensorsReport()
        let experts = try c.moeLayers.isEmpty ? nil : ExportedExperts.resolve(bundle: bundle, requested: options.pruned)
        if let note = experts?.note(c.router) { report.notes.append(note) }

        // Which tensors are linear layers, and the fused sets whose members need one scheme.
        let projections = FeedForwardProjection.allCases
        var fused: [[String]] = []
        for l in 0..<c.numHiddenLayers {
            fused.append([.q, .k, .v].map { names.attention(l, $0, bias: false) })
            if c.isMoELayer(l) {
                fused.append([.gate, .up].map { names.sharedExperts(l, $0, bias: false) })
                fused.append(experts!.written[l]!.filter { experts!.kept[l]!.contains($0) }.flatMap { e in projections.map { names.expert(l, e, $0) } })
            } else {
                fused.append([.gate, .up].map { names.denseMLP(l, $0, bias: false) })
            }
        }
        let linearClasses: Set<TensorClass> = [.attention, .denseMLP, .sharedExperts, .routedExperts]
        let linears = bundle.manifest.tensors.filter { linearClasses.contains($0.tensorClass) && $0.shape.count == 2 && $0.name.hasSuffix(".weight") }
        var scheme: [String: PackedScheme] = [:]
        var unsupported: [String: Int] = [:]
        for t in linears where options.packQuantized {
            if let s = PackedScheme.holding(t.format) { scheme[t.name] = s } else if !t.format.isFloat { unsupported[t.format.rawValue, default: 0] += 1 }
        }
        if !unsupported.isEmpty && !options.dequantizeUnsupported {
            let list = unsupported.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            throw FormatError("\(bundle.name): compressed-tensors' pack-quantized format holds symmetric uniform integer codes; "
                              + "\(list) tensors are not (nl4g32 is a non-uniform grid, int4gNa asymmetric). Pass "
                              + "--dequantize-unsupported to write them as \(options.dtype.rawValue) floats, or convert with a profile "
                              + "of q4/q3/q2/int8 formats")
        }
        if !unsupported.isEmpty {
            report.notes.append("dequantized to \(dtypeName(options.dtype)): " + unsupported.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
                                + " tensors (pack-quantized cannot hold them)")
        }
        var mixedSets = 0
        for set in fused {
            let present = set.filter { bundle.tensor($0) != nil }
            guard present.count > 1 else { continue }
            let schemes = present.map { scheme[$0] }
            if schemes.allSatisfy({ $0 != nil }), let common = PackedScheme.common(Set(schemes.map { $0! })) {
                for name in present { scheme[name] = common }
            } else if Set(schemes).count > 1 {
                mixedSets += 1
            }
        }
        if mixedSets > 0 {
            report.notes.append("\(mixedSets) sets of layers an engine fuses (a layer's experts, q/k/v, gate/up) mix schemes "
                                + "no one scheme holds: transformers loads them, vLLM wants one scheme per fused set")
        }

        // The output tensors, in the bundle's order; masked experts at the end.
        var items: [Item] = []
        var ignore: [String] = []
        var denseTargets: [PackedScheme: [String]] = [:]
        // Routed experts: scheme → MoE layer → module names (written as one regex per layer).
        var expertTargets: [PackedScheme: [Int: [String]]] = [:]
        var expertLayer: [String: Int] = [:]
        var maxScale = 0.0, maxFloat = 0.0
        var exportName: [String: String] = [:]
        var routerOf: [String: Int] = [:], biasOf: [String: Int] = [:]
        for l in c.moeLayers {
            routerOf[names.router(l)] = l
            biasOf[names.routerBias(l)] = l
            for (i, e) in experts!.written[l]!.enumerated() {
                for p in projections {
                    exportName[names.expert(l, e, p)] = names.expert(l, experts!.mode == .drop ? i : e, p)
                    expertLayer[names.expert(l, experts!.mode == .drop ? i : e, p)] = l
                }
            }
        }

        func payload(_ t: BundleTensor) throws -> PayloadBytes { try bundle.payload(t.payload, what: "tensor \(t.name)") }
        func values(_ t: BundleTensor) throws -> [Float] { try bundle.decodedValues(of: t) }
        /// `v` in `dtype`, and the largest relative change that rounding made.
        func encoded(_ v: [Float], _ dtype: DType) -> (bytes: [UInt8], rounding: Double) {
            let bytes = dtype.encode(v)
            guard dtype != .f32 else { return (bytes, 0) }
            var back = [Float](repeating: 0, count: v.count)
            bytes.withUnsafeBytes { b in back.withUnsafeMutableBufferPointer { dtype.convertToFloat(b.baseAddress!, count: v.count, into: $0.baseAddress!) } }
            var worst = 0.0
            for i in v.indices where v[i] != 0 { worst = max(worst, Double(abs(back[i] - v[i]) / abs(v[i]))) }
            return (bytes, worst)
        }
        func floatItem(_ name: String, shape: [Int], _ make: @escaping () throws -> [Float], dtype: DType) {
            items.append(Item(entry: .init(name: name, dtype: dtype, shape: shape)) {
                let (bytes, rounding) = encoded(try make(), dtype)
                maxFloat = max(maxFloat, rounding)
                return bytes
            })
        }
        func packedItems(_ name: String, rows: Int, cols: Int, scheme s: PackedScheme, _ make: @escaping () throws -> SymmetricCodes) {
            let module = String(name.dropLast(".weight".count))
            if let l = expertLayer[name] {
                expertTargets[s, default: [:]][l, default: []].append(module)
            } else {
                denseTargets[s, default: []].append(module)
            }
            report.schemes[s.label, default: 0] += 1
            // Codes are decoded once and shared by the two entries that need them.
            var cached: SymmetricCodes?
            func codes() throws -> SymmetricCodes {
                if let cached { return cached }
                let made = try make()
                cached = made
                return made
            }
            let words = (cols * s.bits + 31) / 32
            items.append(Item(entry: .init(name: module + ".weight_packed", dtypeName: "I32", elementBytes: 4, shape: [rows, words])) {
                try codes().packed(rows: rows, cols: cols, bits: s.bits)
            })
            items.append(Item(entry: .init(name: module + ".weight_scale", dtype: options.dtype, shape: [rows, s.group.map { cols / $0 } ?? 1])) {
                let (bytes, rounding) = encoded(try codes().scales(for: s, cols: cols), options.dtype)
                cached = nil
                maxScale = max(maxScale, rounding)
                return bytes
            })
            items.append(Item(entry: .init(name: module + ".weight_shape", dtypeName: "I64", elementBytes: 8, shape: [2])) {
                [Int64(rows), Int64(cols)].flatMap { v in (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
            })
        }

        for t in bundle.manifest.tensors {
            let name = exportName[t.name] ?? t.name
            if let s = scheme[t.name] {
                packedItems(name, rows: t.shape[0], cols: t.shape[1], scheme: s) {
                    let p = try payload(t)
                    return try withExtendedLifetime(p) { try SymmetricCodes(p.buffer, format: t.format, rows: t.shape[0], cols: t.shape[1]) }
                }
            } else if let l = routerOf[t.name] ?? biasOf[t.name], let experts, experts.mode != nil {
                // Drop: the written experts' rows (router) or entries (bias); mask: pruned biases −1e9.
                let e = c.moeNumExperts, isRouter = routerOf[t.name] != nil
                let rowsKept = experts.written[l]!, pruned = Set(experts.pruned(l))
                let shape = isRouter ? [rowsKept.count, t.elementCount / e] : Array(t.shape.dropLast()) + [rowsKept.count]
                ignore.append(String(t.name.dropLast(isRouter ? ".weight".count : 0)))
                items.append(Item(entry: .init(name: name, dtype: .f32, shape: shape)) {
                    let v = try values(t)
                    if isRouter {
                        let width = v.count / e
                        return DType.f32.encode(rowsKept.flatMap { v[($0 * width)..<(($0 + 1) * width)] })
                    }
                    var out: [Float] = []
                    for r in 0..<(v.count / e) {
                        for x in rowsKept { out.append(pruned.contains(x) ? GGUFExporter.prunedBias : v[r * e + x]) }
                    }
                    return DType.f32.encode(out)
                })
            } else if t.tensorClass == .router || t.tensorClass == .norms || t.tensorClass == .biases || t.shape.count != 2 {
                // Kept as stored (f32 in every shipped profile); transformers keeps the router in f32.
                if t.tensorClass == .router, t.name.hasSuffix(".weight") { ignore.append(String(t.name.dropLast(".weight".count))) }
                let dtype: DType = t.format == .bf16 ? .bf16 : t.format == .f16 ? .f16 : .f32
                floatItem(name, shape: t.shape, { try values(t) }, dtype: dtype)
            } else {
                // Embeddings, lm_head, float linears, and what pack-quantized cannot hold.
                if options.packQuantized, t.name.hasSuffix(".weight"), t.tensorClass != .embeddings {
                    ignore.append(String(t.name.dropLast(".weight".count)))
                    if t.tensorClass != .mtp && t.tensorClass != .lmHead { report.schemes[dtypeName(options.dtype), default: 0] += 1 }
                }
                if options.packQuantized, !t.format.isFloat, t.tensorClass == .embeddings || t.tensorClass == .lmHead {
                    report.notes.appendOnce("\(t.tensorClass.rawValue) (\(t.format.rawValue)) written as \(dtypeName(options.dtype)): "
                                            + "compressed-tensors quantizes linear layers, and lm_head stays unquantized by convention")
                }
                floatItem(name, shape: t.shape, { try values(t) }, dtype: options.dtype)
            }
        }
        if let experts, experts.mode == .mask {
            // A pruned expert as zeros in its layer's scheme (or dtype when the layer's experts are floats).
            for l in c.moeLayers {
                guard let first = experts.written[l]!.first(where: { experts.kept[l]!.contains($0) }) else { continue }
                for e in experts.pruned(l) {
                    for p in projections {
                        guard let model = bundle.tensor(names.expert(l, first, p)), model.shape.count == 2 else { continue }
                        let (rows, cols) = (model.shape[0], model.shape[1])
                        if let s = scheme[model.name] {
                            packedItems(names.expert(l, e, p), rows: rows, cols: cols, scheme: s) {
                                SymmetricCodes(zerosRows: rows, cols: cols, scheme: s)
                            }
                        } else {
                            ignore.append(String(names.expert(l, e, p).dropLast(".weight".count)))
                            floatItem(names.expert(l, e, p), shape: model.shape, { [Float](repeating: 0, count: rows * cols) }, dtype: options.dtype)
                        }
                    }
                }
            }
        }

        // The folder, written next to the output and renamed when complete.
        let url = URL(fileURLWithPath: outputPath)
        let parent = url.deletingLastPathComponent()
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: parent.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw FormatError("output folder \(parent.path) does not exist")
        }
        let temporary = parent.appendingPathComponent(".\(url.lastPathComponent).partial-\(getpid())")
        try? FileManager.default.removeItem(at: temporary)
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: false)
        do {
            var shards: [[Item]] = [[]]
            var shardSize = 0
            for item in items {
                if shardSize > 0 && shardSize + item.entry.byteCount > options.shardBytes {
                    shards.append([])
                    shardSize = 0
                }
                shards[shards.count - 1].append(item)
                shardSize += item.entry.byteCount
            }
            var weightMap: [String: String] = [:]
            var total = 0
            for (i, shard) in shards.enumerated() {
                let file = String(format: "model-%05d-of-%05d.safetensors", i + 1, shards.count)
                let writer = try SafeTensorsWriter(url: temporary.appendingPathComponent(file), entries: shard.map(\.entry),
                                                   metadata: ["format": "pt"])
                for item in shard {
                    let bytes = try item.bytes()
                    try bytes.withUnsafeBytes { try writer.write(item.entry.name, bytes: $0) }
                    weightMap[item.entry.name] = file
                    total += item.entry.byteCount
                }
                try writer.close()
            }
            let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
            try writeJSON(index, to: temporary.appendingPathComponent("model.safetensors.index.json"))
            if expertTargets.count > 1 || denseTargets.count > 1 {
                report.notes.append("\(expertTargets.count) schemes for routed experts and \(denseTargets.count) for the other layers: "
                                    + "transformers' loader takes one of each (vLLM reads them per layer)")
            }
            try writeJSON(try config(bundle: bundle, experts: experts, dense: denseTargets, routed: expertTargets, ignore: ignore,
                                     dtype: options.dtype),
                          to: temporary.appendingPathComponent("config.json"))
            for file in bundle.manifest.files where file.name != "config.json" && file.name != "model.safetensors.index.json" {
                guard let data = try bundle.fileData(named: file.name) else { continue }
                try data.write(to: temporary.appendingPathComponent(file.name))
            }
            report.tensorCount = items.count
            report.shardCount = shards.count
            report.bytes = total
            report.maxScaleRounding = maxScale
            report.maxFloatRounding = maxFloat
            try replace(outputPath, with: temporary)
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw error
        }
        return report
    }

    /// config.json: the bundle's config with the dtype, the quantization block and, when
    /// pruned experts were dropped, the new expert count.
    static func config(bundle: BundleFile, experts: ExportedExperts?, dense: [PackedScheme: [String]],
                       routed: [PackedScheme: [Int: [String]]], ignore: [String], dtype: DType) throws -> [String: Any] {
        guard var json = try JSONSerialization.jsonObject(with: Data(bundle.manifest.configJSON.utf8)) as? [String: Any] else {
            throw FormatError("\(bundle.name): its config is not a JSON object")
        }
        json["torch_dtype"] = dtypeName(dtype)
        if json["dtype"] != nil { json["dtype"] = dtypeName(dtype) }
        if let experts, experts.mode == .drop {
            let keys = ModelFamilies.family(of: bundle.config.architecture).expertCountKeys
            let present = keys.filter { json[$0] != nil }
            for key in present.isEmpty ? [keys[0]] : present { json[key] = experts.count }
        }
        // One group per scheme. Routed experts are targeted by a regex per layer ("re:" and
        // "experts" is how transformers' loader finds the experts' group), the rest by name.
        var groups: [String: Any] = [:]
        func group(_ s: PackedScheme, _ targets: [String]) {
            groups["group_\(groups.count)"] = ["targets": targets, "weights": s.weightsConfig,
                                               "input_activations": NSNull(), "output_activations": NSNull(), "format": "pack-quantized"]
        }
        for s in routed.keys.sorted() {
            group(s, routed[s]!.keys.sorted().map { l in "re:^" + regexEscaped(commonPrefix(routed[s]![l]!)) + "\\d+\\..*$" })
        }
        for s in dense.keys.sorted() { group(s, dense[s]!) }
        guard !groups.isEmpty else { return json }
        json["quantization_config"] = [
            "quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
            "config_groups": groups, "ignore": ignore.sorted(), "kv_cache_scheme": NSNull(),
        ] as [String: Any]
        return json
    }

    /// The longest common prefix of `names` that ends with a dot ("model.layers.1.mlp.experts.").
    static func commonPrefix(_ names: [String]) -> String {
        var prefix = names.first ?? ""
        for n in names.dropFirst() { while !n.hasPrefix(prefix) { prefix.removeLast() } }
        while let last = prefix.last, last != "." { prefix.removeLast() }
        return prefix
    }

    static func regexEscaped(_ s: String) -> String {
        var out = ""
        for ch in s { if ".^$*+?()[]{}|\\".contains(ch) { out.append("\\") }; out.append(ch) }
        return out
    }

    /// The PyTorch name of a dtype, as config.json spells it.
    public static func dtypeName(_ dtype: DType) -> String {
        switch dtype {
        case .f16: "float16"
        case .bf16: "bfloat16"
        case .f32: "float32"
        }
    }

    static func writeJSON(_ object: Any, to url: URL) throws {
        var data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
        data.append(0x0a)
        try data.write(to: url)
    }

    /// Puts the finished folder at `outputPath`, moving an existing one (--force) aside first.
    static func replace(_ outputPath: String, with temporary: URL) throws {
        let fm = FileManager.default
        let url = URL(fileURLWithPath: outputPath)
        var old: URL?
        if fm.fileExists(atPath: outputPath) {
            let aside = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).old-\(getpid())")
            try? fm.removeItem(at: aside)
            try fm.moveItem(at: url, to: aside)
            old = aside
        }
        guard rename(temporary.path, outputPath) == 0 else {
            let reason = String(cString: strerror(errno))
            if let old { try? fm.moveItem(at: old, to: url) }
            throw FormatError("cannot move \(temporary.path) to \(outputPath): \(reason)")
        }
        if let old { try? fm.removeItem(at: old) }
    }
}
