import Foundation
import MoEFormat
import MoERuntime

/// Measures what pruning costs: for each criterion and ratio, the pruned model (f32, experts
/// removed, nothing else changed) against the unpruned model on held-out tokens.
public enum PruningSweep {
    public struct Row: Sendable, Codable, Equatable {
        public var criterion: String
        public var budget: String
        public var ratio: Double
        public var expertsKept: Int
        public var expertsTotal: Int
        /// Share of calibration top-k selections the kept experts carried.
        public var selectionCoverage: Double
        public var perplexity: Double
        public var meanKLDivergence: Double
        public var top1Agreement: Double
    }

    public struct Result: Sendable, Codable, Equatable {
        public var referencePerplexity: Double
        public var predictedTokens: Int
        public var context: Int
        public var rows: [Row]
    }

    public static func run(weights: any WeightSource, stats: CalibrationStats, tokens: [Int32], context: Int,
                           criteria: [PruningCriterion], ratios: [Double], global: Bool = false,
                           progress: ((String) -> Void)? = nil) throws -> Result {
        try stats.checkApplies(to: ModelIdentity.compute(weights), config: weights.config)
        let reference = try ErnieModel(weights: weights)
        var configurations: [(ratio: Double, criterion: PruningCriterion, plan: PruningPlan)] = []
        for ratio in ratios {
            for criterion in criteria {
                let budget: PruningBudget = global ? .global(ratio: ratio) : .perLayer(ratio: ratio)
                configurations.append((ratio, criterion, try ExpertPruner.plan(stats: stats, criterion: criterion, budget: budget)))
            }
        }
        let models = try configurations.map { try ErnieModel(weights: PrunedWeights(base: weights, plan: $0.plan)) }
        let reports = try Evaluator.evaluate(models: models, tokens: tokens, context: context, reference: reference) { done, total in
            progress?("window \(done)/\(total)")
        }
        var rows: [Row] = []
        var referencePerplexity = 0.0, predicted = 0
        for (c, report) in zip(configurations, reports) {
            guard let comparison = report.reference else { continue }
            referencePerplexity = comparison.referencePerplexity
            predicted = report.predictedTokens
            rows.append(Row(criterion: c.criterion.rawValue, budget: global ? "global" : "per_layer", ratio: c.ratio,
                            expertsKept: c.plan.keptCount, expertsTotal: c.plan.kept.count * c.plan.numExperts,
                            selectionCoverage: ExpertPruner.coverage(stats: stats, plan: c.plan, criterion: .frequency).overall,
                            perplexity: report.perplexity, meanKLDivergence: comparison.meanKLDivergence,
                            top1Agreement: comparison.top1Agreement))
        }
        return Result(referencePerplexity: referencePerplexity, predictedTokens: predicted, context: context, rows: rows)
    }

    /// A Markdown table of the result.
    public static func markdown(_ result: Result) -> String {
        var s = "| ratio | budget | criterion | experts kept | selections kept | perplexity | KLD (nats) | top-1 agreement |\n"
        s += "|---|---|---|---|---|---|---|---|\n"
        s += String(format: "| 0 | - | (unpruned f32) | all | 100%% | %.3f | 0 | 100%% |\n", result.referencePerplexity)
        for r in result.rows {
            s += String(format: "| %.3g | %@ | %@ | %d/%d | %.1f%% | %.3f | %.4f | %.1f%% |\n", r.ratio, r.budget, r.criterion,
                        r.expertsKept, r.expertsTotal, r.selectionCoverage * 100, r.perplexity, r.meanKLDivergence,
                        r.top1Agreement * 100)
        }
        return s
    }
}
