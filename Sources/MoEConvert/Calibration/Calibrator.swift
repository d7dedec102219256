import Foundation
import MoEFormat
import MoERuntime

/// Runs a model over sample text and records how it routes and what its products read (see
/// `CalibrationStats`).
public enum Calibrator {
    public static let defaultContext = 256
    public static let defaultMaxTokens = 100_000
    /// Hidden states the layer-by-layer engine keeps at once, by default.
    public static let defaultMemoryBudget = 512 << 20

    /// How the windows go through the model. Both give the same statistics.
    public enum Engine: Sendable, Equatable {
        /// All windows through one layer at a time (`ErnieModel.observeLayerByLayer`): each
        /// layer's weights are read once and released when done, the hidden states of the windows
        /// in flight kept within `memoryBudget` bytes (more windows run as several passes).
        case layerByLayer(memoryBudget: Int)
        /// Each window through the whole model in turn: the model's pages stay resident.
        case perWindow
    }

    /// How far a run is.
    public struct Progress: Sendable {
        /// Tokens of the calibration windows.
        public var tokens: Int
        /// Share of the work done, 0...1.
        public var fraction: Double
        /// The layer running (0-based) and the layer count; nil for the per-window engine.
        public var layer: Int?
        public var layers: Int
        /// The pass (0-based) and their number: more than one when the hidden states exceed the budget.
        public var pass: Int
        public var passes: Int
        /// Estimated seconds left (nil before any work is done).
        public var secondsLeft: Double?
    }

    /// Cuts each document's token ids into consecutive windows of at most `context` tokens
    /// (windows never span two documents), stopping after `maxTokens` tokens in all.
    public static func windows(_ documents: [[Int32]], context: Int, maxTokens: Int) throws -> [[Int32]] {
        guard context > 0 else { throw CalibrationError("--context must be positive") }
        guard maxTokens > 0 else { throw CalibrationError("--max-tokens must be positive") }
        var result: [[Int32]] = []
        var remaining = maxTokens
        for ids in documents {
            var start = 0
            while start < ids.count, remaining > 0 {
                let end = min(start + context, ids.count, start + remaining)
                result.append(Array(ids[start..<end]))
                remaining -= end - start
                start = end
            }
            if remaining == 0 { break }
        }
        guard !result.isEmpty else { throw CalibrationError("the calibration text gave no tokens") }
        return result
    }

    /// Runs every window from an empty cache and returns the statistics.
    public static func run(model: ErnieModel, weights: any WeightSource, windows: [[Int32]], source: String,
                           engine: Engine = .layerByLayer(memoryBudget: defaultMemoryBudget),
                           progress: ((Progress) -> Void)? = nil) throws -> CalibrationStats {
        let c = model.config
        guard !c.moeLayers.isEmpty else {
            throw CalibrationError("the model has no mixture-of-experts layers to calibrate")
        }
        let identity = try ModelIdentity.compute(weights)
        let kept = Dictionary(uniqueKeysWithValues: c.moeLayers.map { ($0, weights.keptExperts(layer: $0)) })
        let recorder = RoutingRecorder(numExperts: c.moeNumExperts, kept: kept)
        let total = windows.reduce(0) { $0 + $1.count }
        let context = windows.map(\.count).max() ?? 0
        switch engine {
        case .layerByLayer(let budget):
            guard budget > 0 else { throw CalibrationError("--memory-budget must be positive") }
            try model.observeLayerByLayer(windows, observer: recorder, memoryBudget: budget) { p in
                progress?(Progress(tokens: total, fraction: Double(p.tokenLayersDone) / Double(max(p.tokenLayersTotal, 1)),
                                   layer: p.layer, layers: p.layers, pass: p.group, passes: p.groups,
                                   secondsLeft: p.secondsLeft))
            }
        case .perWindow:
            let cache = model.makeCache(capacity: context)
            let start = Date()
            var done = 0
            for window in windows {
                cache.reset()
                _ = try model.forward(window, cache: cache, lastOnly: true, observer: recorder)
                done += window.count
                let elapsed = Date().timeIntervalSince(start)
                progress?(Progress(tokens: total, fraction: Double(done) / Double(max(total, 1)), layer: nil,
                                   layers: c.numHiddenLayers, pass: 0, passes: 1,
                                   secondsLeft: elapsed * Double(total - done) / Double(done)))
            }
        }
        return CalibrationStats(
            model: .init(identity: identity, identityScheme: ModelIdentity.scheme, architecture: c.architecture.rawValue,
                         numExperts: c.moeNumExperts, moeK: c.moeK, moeLayers: c.moeLayers),
            data: .init(source: source, tokens: total, windows: windows.count, context: context),
            layers: recorder.layerStats(), inputs: recorder.inputs.layerInputs())
    }
}
