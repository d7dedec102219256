import ArgumentParser
import Foundation
import MoEConvert
import MoERuntime

struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record how a model routes sample text (per-layer, per-expert statistics for pruning).",
        discussion: "DATA is plain text, or JSON Lines with {\"text\": ...} or {\"messages\": [...]} per line. See docs/calibrate.md.")

    @Argument(help: "Checkpoint directory or bundle.")
    var model: String

    @Option(help: "Sample text: plain text or JSONL.")
    var data: String

    @Option(help: "Output statistics file (.json).")
    var output: String

    @Option(help: "Stop after this many tokens.")
    var maxTokens = Calibrator.defaultMaxTokens

    @Option(help: "Tokens per window; each window runs from an empty cache.")
    var context = Calibrator.defaultContext

    @Option(help: "Memory for the hidden states of the windows in flight, e.g. 512M or 2G (default 512M); more windows run as several passes over the layers.")
    var memoryBudget: String?

    @Flag(help: "Run each window through the whole model in turn instead of all windows one layer at a time (same statistics; the model's pages stay resident).")
    var perWindow = false

    @Option(help: "Also write a usage heatmap with a pruning preview: .html or .svg.")
    var report: String?

    @Option(help: "Prune ratio shown in the report.")
    var reportRatio = 0.25

    @Option(help: "Pruning criterion shown in the report: \(PruningCriterion.allCases.map(\.rawValue).joined(separator: ", ")).")
    var reportCriterion = PruningCriterion.default.rawValue

    func validate() throws {
        guard maxTokens > 0 else { throw ValidationError("--max-tokens must be positive") }
        guard context > 0 else { throw ValidationError("--context must be positive") }
        guard PruningCriterion(rawValue: reportCriterion) != nil else {
            throw ValidationError("--report-criterion must be one of \(PruningCriterion.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let memoryBudget, ByteSize.parse(memoryBudget) == nil {
            throw ValidationError("--memory-budget must be a positive size such as 512M or 2G")
        }
        if let report, !(report.hasSuffix(".html") || report.hasSuffix(".svg")) {
            throw ValidationError("--report must end in .html or .svg")
        }
    }

    @OptionGroup var threading: ThreadOptions

    func run() throws {
        threading.apply()
        let budget = memoryBudget.flatMap(ByteSize.parse) ?? Calibrator.defaultMemoryBudget
        let progress = ProgressLine(label: "calibrate", total: 1000)
        let start = Date()
        let source = try ModelSource(path: model)
        let stats = try Calibration.run(
            source, data: URL(fileURLWithPath: data),
            options: .init(context: context, maxTokens: maxTokens,
                           engine: perWindow ? .perWindow : .layerByLayer(memoryBudget: budget))) { p in
                var detail = "\(p.tokens) tokens"
                if let layer = p.layer {
                    detail = "layer \(layer + 1) of \(p.layers)" + (p.passes > 1 ? ", pass \(p.pass + 1) of \(p.passes)" : "") + ", " + detail
                }
                if let left = p.secondsLeft { detail += ", \(ProgressLine.duration(left)) left" }
                progress.update(Int(p.fraction * 1000), detail: detail)
            }
        progress.finish()
        let seconds = Date().timeIntervalSince(start)
        try stats.write(to: URL(fileURLWithPath: output))
        var lines = ["calibrated on \(stats.data.tokens) tokens (\(stats.data.windows) windows), \(stats.layers.count) MoE layers → \(output)",
                     PassSpeed.line("calibrate", tokens: stats.data.tokens, seconds: seconds,
                                    config: source.config)]
        if let report {
            let criterion = PruningCriterion(rawValue: reportCriterion) ?? .default
            let plan = try ExpertPruner.plan(stats: stats, criterion: criterion, budget: .perLayer(ratio: reportRatio))
            let text = report.hasSuffix(".svg")
                ? CalibrationReport.svg(stats: stats, plan: plan, criterion: criterion, ratio: reportRatio)
                : CalibrationReport.html(stats: stats, plan: plan, criterion: criterion, ratio: reportRatio)
            try Data(text.utf8).write(to: URL(fileURLWithPath: report), options: .atomic)
            let coverage = ExpertPruner.coverage(stats: stats, plan: plan, criterion: .frequency).overall
            lines.append(String(format: "report → %@ (ratio %.3g by %@ keeps %.1f%% of selections)", report, reportRatio,
                                criterion.rawValue, coverage * 100))
        }
        FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8))
    }
}
