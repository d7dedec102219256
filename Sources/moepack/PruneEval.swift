import ArgumentParser
import Foundation
import MoEConvert
import MoERuntime

struct PruneEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune-eval",
        abstract: "Compare pruning criteria and ratios on held-out text against the unpruned model (f32).",
        discussion: "Each pruned model removes experts as convert would, with nothing else changed. See docs/pruning.md.")

    @Argument(help: "Checkpoint directory or unpruned bundle the statistics were measured on.")
    var model: String

    @Option(help: "Calibration statistics from moepack calibrate.")
    var calibration: String

    @Option(help: "Held-out plain text.")
    var data: String

    @Option(help: "Comma-separated prune ratios.")
    var ratios = "0.125,0.25,0.5"

    @Option(help: "Comma-separated criteria.")
    var criteria = PruningCriterion.allCases.map(\.rawValue).joined(separator: ",")

    @Flag(help: "Distribute the budget across layers by score instead of the same ratio per layer.")
    var global = false

    @Option(help: "Tokens per evaluation window.")
    var context = 256

    @Option(help: "Evaluate at most this many tokens of the data.")
    var maxTokens: Int?

    @Flag(help: "Print one JSON object instead of a Markdown table.")
    var json = false

    @OptionGroup var threading: ThreadOptions

    func run() throws {
        threading.apply()
        let ratioValues = try ratios.split(separator: ",").map { part -> Double in
            guard let r = Double(part.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("--ratios: '\(part)' is not a number") }
            return r
        }
        let criterionValues = try criteria.split(separator: ",").map { part -> PruningCriterion in
            guard let c = PruningCriterion(rawValue: part.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--criteria: unknown criterion '\(part)'")
            }
            return c
        }
        let stats = try CalibrationStats(contentsOf: URL(fileURLWithPath: calibration))
        let weights = try ModelLoader.weights(at: model)
        let tokenizer = try ModelLoader.tokenizer(at: model)
        guard let text = try? String(contentsOfFile: data, encoding: .utf8) else { throw ValidationError("cannot read \(data) as UTF-8 text") }
        var tokens = tokenizer.encode(text)
        if let maxTokens { tokens = Array(tokens.prefix(maxTokens)) }
        let result = try PruningSweep.run(weights: weights, stats: stats, tokens: tokens, context: context,
                                          criteria: criterionValues, ratios: ratioValues, global: global) {
            FileHandle.standardError.write(Data(($0 + "\n").utf8))
        }
        print(json ? try JSONOutput.encode(result) : PruningSweep.markdown(result))
    }
}
