import Foundation
import MoEFormat
import MoERuntime

/// The converter's prune stage driven by a calibration stats file: checks that the stats were
/// measured on this checkpoint, then keeps the experts `ExpertPruner` chooses.
public struct CalibrationPruneStage: PruneStage {
    public let stats: CalibrationStats
    /// SHA-256 of the stats file, recorded in the bundle's provenance.
    public let fileSHA256: String

    public init(statsFile: URL) throws {
        guard let data = FileManager.default.contents(atPath: statsFile.path) else {
            throw CalibrationError("cannot read calibration stats \(statsFile.path)")
        }
        stats = try CalibrationStats(jsonData: data, source: statsFile.lastPathComponent)
        var hasher = SHA256Hasher()
        hasher.update(data)
        fileSHA256 = hasher.finalizeHex()
    }

    public init(stats: CalibrationStats) throws {
        self.stats = stats
        var hasher = SHA256Hasher()
        hasher.update(try stats.jsonData())
        fileSHA256 = hasher.finalizeHex()
    }

    public func keptExperts(checkpoint: Checkpoint, settings: PruneSettings) throws -> [Int: [Int]] {
        let weights = try CheckpointWeights(checkpoint: checkpoint)
        try stats.checkApplies(to: ModelIdentity.compute(weights), config: checkpoint.config)
        let budget: PruningBudget = settings.budget == .global ? .global(ratio: settings.ratio) : .perLayer(ratio: settings.ratio)
        return try ExpertPruner.plan(stats: stats, criterion: settings.criterion, budget: budget).kept
    }

    public var provenance: [String: String] {
        ["calibration_sha256": fileSHA256, "calibration_model_identity": stats.model.identity,
         "calibration_tokens": String(stats.data.tokens), "calibration_source": stats.data.source]
    }
}
