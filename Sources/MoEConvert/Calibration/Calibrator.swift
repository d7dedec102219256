import Foundation
import MoEFormat
import MoERuntime

/// Runs a model over sample text and records how it routes (see `CalibrationStats`).
public enum Calibrator {
    public static let defaultContext = 256
    public static let defaultMaxTokens = 100_000

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
    /// `progress(tokensDone, tokensTotal)` is called after each window.
    public static func run(model: ErnieModel, weights: any WeightSource, windows: [[Int32]], source: String,
                           progress: ((Int, Int) -> Void)? = nil) throws -> CalibrationStats {
        let c = model.config
        guard c.architecture == .ernie45MoE, !c.moeLayers.isEmpty else {
            throw CalibrationError("the model has no mixture-of-experts layers to calibrate")
        }
        let identity = try ModelIdentity.compute(weights)
        let kept = Dictionary(uniqueKeysWithValues: c.moeLayers.map { ($0, weights.keptExperts(layer: $0)) })
        let recorder = RoutingRecorder(numExperts: c.moeNumExperts, kept: kept)
        let total = windows.reduce(0) { $0 + $1.count }
        let context = windows.map(\.count).max() ?? 0
        let cache = model.makeCache(capacity: context)
        var done = 0
        for window in windows {
            cache.reset()
            _ = try model.forward(window, cache: cache, lastOnly: true, observer: recorder)
            done += window.count
            progress?(done, total)
        }
        return CalibrationStats(
            model: .init(identity: identity, identityScheme: ModelIdentity.scheme, architecture: c.architecture.rawValue,
                         numExperts: c.moeNumExperts, moeK: c.moeK, moeLayers: c.moeLayers),
            data: .init(source: source, tokens: total, windows: windows.count, context: context),
            layers: recorder.layerStats())
    }
}
