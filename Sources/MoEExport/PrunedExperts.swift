import MoEFormat

/// How an export writes the experts a pruned bundle removed. moepack keeps every router row
/// and leaves pruned experts out of the top-k; the engines want a dense expert list.
public enum PrunedExpertsMode: String, Sendable, CaseIterable {
    /// The router rows and experts are removed and the kept experts renumbered: the smallest
    /// file. Routing is exact when the router renormalises its k probabilities and has no
    /// correction bias (Mixtral, Qwen3 with norm_topk_prob); otherwise the dropped experts'
    /// probability mass shifts the weights (and, with a bias, the choice) a little.
    case drop
    /// Pruned experts are written as zeros and their correction bias set to −1e9, so they are
    /// never chosen: routing is exact, the zeros cost their bytes. Needs a correction bias
    /// (ERNIE).
    case mask
}

/// The expert list an export writes for each MoE layer.
struct ExportedExperts {
    /// nil when the bundle prunes nothing.
    let mode: PrunedExpertsMode?
    /// Per MoE layer, the original ids of the experts written, in the export's order.
    let written: [Int: [Int]]
    /// Per MoE layer, the original ids the bundle holds.
    let kept: [Int: Set<Int>]
    /// Experts per MoE layer in the export.
    let count: Int

    /// The pruned ids of `layer` (written as zeros in mask mode).
    func pruned(_ layer: Int) -> [Int] { (written[layer] ?? []).filter { !(kept[layer]?.contains($0) ?? false) } }

    /// Whether dropping experts keeps routing exact under `rule`.
    static func dropIsExact(_ rule: RouterRule) -> Bool { rule.renormalize && !rule.correctionBias }

    /// Drop when every layer keeps the same number of experts, else mask; `requested` forces one
    /// (a clear error when the bundle cannot have it).
    static func resolve(bundle: BundleFile, requested: PrunedExpertsMode?) throws -> ExportedExperts {
        let c = bundle.config, all = Array(0..<c.moeNumExperts)
        var kept: [Int: Set<Int>] = [:]
        var keptLists: [Int: [Int]] = [:]
        for l in c.moeLayers {
            let list = bundle.keptExperts(layer: l) ?? all
            guard list.count >= c.moeK else {
                throw FormatError("\(bundle.name): layer \(l) keeps \(list.count) experts, fewer than the \(c.moeK) each token uses")
            }
            keptLists[l] = list.sorted()
            kept[l] = Set(list)
        }
        let counts = Set(keptLists.values.map(\.count))
        guard counts.contains(where: { $0 < c.moeNumExperts }) else {
            return ExportedExperts(mode: nil, written: keptLists, kept: kept, count: c.moeNumExperts)
        }
        let canDrop = counts.count == 1, canMask = c.router.correctionBias
        let mode: PrunedExpertsMode
        switch requested {
        case .drop?:
            guard canDrop else {
                let summary = c.moeLayers.map { "\($0): \(keptLists[$0]!.count)" }.joined(separator: ", ")
                throw FormatError("\(bundle.name): --pruned drop needs every MoE layer to keep the same number of experts "
                                  + "(the engines have one expert count); this bundle's layers keep \(summary). "
                                  + (canMask ? "Use --pruned mask." : "Prune with a ratio that keeps the same count per layer."))
            }
            mode = .drop
        case .mask?:
            guard canMask else {
                throw FormatError("\(bundle.name): --pruned mask needs a router correction bias to keep pruned experts out "
                                  + "(\(c.architecture.rawValue) has none); use --pruned drop")
            }
            mode = .mask
        case nil:
            guard canDrop || canMask else {
                throw FormatError("\(bundle.name): its MoE layers keep different numbers of experts and "
                                  + "\(c.architecture.rawValue) has no router correction bias to mask pruned ones: "
                                  + "the engines cannot hold it. Prune with a ratio that keeps the same count per layer.")
            }
            mode = canDrop ? .drop : .mask
        }
        let written = mode == .drop ? keptLists : Dictionary(uniqueKeysWithValues: c.moeLayers.map { ($0, all) })
        return ExportedExperts(mode: mode, written: written, kept: kept, count: mode == .drop ? counts.first! : c.moeNumExperts)
    }

    /// The output line that says what was done with the pruned experts.
    func note(_ rule: RouterRule) -> String? {
        guard let mode else { return nil }
        switch mode {
        case .drop:
            return "pruned experts dropped: \(count) experts per layer, router rows removed and experts renumbered"
                + (Self.dropIsExact(rule) ? " (routing exact: the router renormalises its top-k)"
                   : " (routing changes slightly: measure with eval against the bundle)")
        case .mask:
            return "pruned experts written as zeros with correction bias \(GGUFExporter.prunedBias) (never chosen; routing exact)"
        }
    }
}
