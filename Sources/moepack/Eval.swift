import ArgumentParser
import Foundation
import MoERuntime

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Perplexity on a text file; with --reference also mean KL divergence and top-1 agreement.",
        discussion: "See docs/eval.md for exactly how the numbers are computed.")

    @Argument(help: "Checkpoint directory or bundle.")
    var model: String

    @Option(help: "UTF-8 text file to score.")
    var data: String

    @Option(help: "Window length in tokens (non-overlapping windows).")
    var context = 256

    @Option(help: "Reference model (e.g. the f32 checkpoint) to compare against.")
    var reference: String?

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @OptionGroup var cache: CacheOptions
    @OptionGroup var threading: ThreadOptions

    func run() throws {
        threading.apply()
        let languageModel = try LanguageModel.load(at: model, cachePrecision: cache.precision)
        let text = try readTextFile(data)
        let tokens = try languageModel.tokenizer.encode(text, addBOS: false, parseSpecialTokens: false)
        guard tokens.count >= 2 else {
            throw InputError("\(data) has \(tokens.count) token(s); perplexity needs at least 2")
        }
        let referenceModel = try reference.map { try ModelLoader.model(at: $0) }
        var bar: ProgressLine?
        let report = try Evaluator.evaluate(model: languageModel.model, tokens: tokens, context: context,
                                            reference: referenceModel) { done, total in
            if bar == nil { bar = ProgressLine(label: "eval", total: total) }
            bar?.update(done)
        }
        bar?.finish()
        print(json ? try JSONOutput.encode(report) : Self.text(report))
    }

    static func text(_ r: EvaluationReport) -> String {
        var lines = [
            String(format: "perplexity        %.4f", r.perplexity),
            "tokens            \(r.tokens) (\(r.windows) windows of \(r.context), \(r.predictedTokens) predictions)",
        ]
        if let c = r.reference {
            lines.append(String(format: "reference ppl     %.4f", c.referencePerplexity))
            lines.append(String(format: "mean KL(ref‖model) %.6f nats", c.meanKLDivergence))
            lines.append(String(format: "top-1 agreement   %.2f%%", c.top1Agreement * 100))
        }
        return lines.joined(separator: "\n")
    }
}
