import ArgumentParser
import Foundation
import MoEFormat
import MoERuntime

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Perplexity on a text file; with --reference also mean KL divergence and top-1 agreement.",
        discussion: """
        Every model runs layer by layer: all windows pass one layer before the next, so memory is \
        one layer's weights plus the windows' hidden states (--memory-budget), however large the \
        model. --save-reference REF scores MODEL (the full-precision checkpoint) once and stores \
        what KL and top-1 need in REF; --reference REF then scores a bundle against it without \
        opening the checkpoint again. --reference MODEL does both in one run (the reference file \
        goes to a temporary folder). See docs/eval.md for how the numbers are computed.
        """)

    @Argument(help: "Checkpoint directory or bundle.")
    var model: String

    @Option(help: "UTF-8 text file to score.")
    var data: String

    @Option(help: "Window length in tokens (non-overlapping windows).")
    var context = 256

    @Option(help: "Score only the first N tokens of the text.")
    var maxTokens: Int?

    @Option(help: "Reference to compare against: a reference file (from --save-reference) or a model (e.g. the checkpoint).")
    var reference: String?

    @Option(help: "Score MODEL as the reference and write its reference file here.")
    var saveReference: String?

    @Option(help: "Memory for the hidden states of the windows in flight, e.g. 512M or 2G (default 512M); more windows run as several passes.")
    var memoryBudget: String?

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @OptionGroup var cache: CacheOptions
    @OptionGroup var threading: ThreadOptions

    func validate() throws {
        if reference != nil, saveReference != nil {
            throw ValidationError("give --reference or --save-reference, not both")
        }
        if let maxTokens, maxTokens < 2 { throw ValidationError("--max-tokens must be at least 2") }
        if let memoryBudget, ByteSize.parse(memoryBudget) == nil {
            throw ValidationError("--memory-budget must be a positive size such as 512M or 2G")
        }
    }

    func run() throws {
        threading.apply()
        let budget = memoryBudget.flatMap(ByteSize.parse) ?? Evaluator.defaultMemoryBudget
        let textBytes = try readFileBytes(data)
        let text = ReferenceText(source: URL(fileURLWithPath: data).lastPathComponent,
                                 sha256: textBytes.withUnsafeBytes { bytes in
                                     var h = SHA256Hasher()
                                     h.update(bytes)
                                     return h.finalizeHex()
                                 })
        guard let string = String(data: textBytes, encoding: .utf8) else { throw InputError("\(data) is not UTF-8 text") }
        let source = try ModelSource(path: model)
        var tokens = try source.tokenizer().encode(string, addBOS: false, parseSpecialTokens: false)
        if let maxTokens, tokens.count > maxTokens { tokens.removeLast(tokens.count - maxTokens) }
        guard tokens.count >= 2 else {
            throw InputError("\(data) has \(tokens.count) token(s); perplexity needs at least 2")
        }
        var temporaryReference: URL?
        defer { if let temporaryReference { try? FileManager.default.removeItem(at: temporaryReference) } }
        var referenceFile: String?
        if let reference {
            if ReferenceFileReader.isReferenceFile(reference) {
                referenceFile = reference
            } else {
                // The reference model runs first, on its own, so the two models are never in memory together.
                let folder = FileManager.default.temporaryDirectory.appendingPathComponent("moepack-reference-\(getpid())")
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                temporaryReference = folder
                let path = folder.appendingPathComponent("reference.mpkref").path
                let referenceModel = try ModelLoader.model(at: reference)
                _ = try timed("reference", tokens: tokens.count, config: referenceModel.config) { progress in
                    try Evaluator.saveReference(model: referenceModel, modelSource: reference, tokens: tokens, context: context,
                                                text: text, to: path, memoryBudget: budget, progress: progress)
                }
                referenceFile = path
            }
        }
        let scored = try source.model(cachePrecision: cache.precision)
        let report: EvaluationReport
        if let saveReference {
            report = try timed("eval", tokens: tokens.count, config: scored.config) { progress in
                try Evaluator.saveReference(model: scored, modelSource: model, tokens: tokens, context: context,
                                            text: text, to: saveReference, memoryBudget: budget, progress: progress)
            }
            let size = (try? FileManager.default.attributesOfItem(atPath: saveReference)[.size] as? Int) ?? 0
            note("reference → \(saveReference) (\(ByteSize.text(size)))")
        } else if let referenceFile {
            let reader = try ReferenceFileReader(path: referenceFile)
            report = try timed("eval", tokens: tokens.count, config: scored.config) { progress in
                try Evaluator.evaluate(model: scored, tokens: tokens, context: context, reference: reader, text: text,
                                       memoryBudget: budget, progress: progress)
            }
        } else {
            report = try timed("eval", tokens: tokens.count, config: scored.config) { progress in
                try Evaluator.evaluate(model: scored, tokens: tokens, context: context, memoryBudget: budget, progress: progress)
            }
        }
        print(json ? try JSONOutput.encode(report) : Self.text(report))
    }

    /// Runs one layer-by-layer pass with a progress line, then reports its speed on stderr.
    private func timed<T>(_ label: String, tokens: Int, config: ModelConfig,
                          _ body: (@escaping (LayerPassProgress) -> Void) throws -> T) throws -> T {
        let bar = ProgressLine(label: label, total: 1000)
        let start = Date()
        let result = try body { p in
            var detail = "layer \(p.layer + 1) of \(p.layers)" + (p.groups > 1 ? ", pass \(p.group + 1) of \(p.groups)" : "")
                + ", \(tokens) tokens"
            if let left = p.secondsLeft { detail += ", \(ProgressLine.duration(left)) left" }
            bar.update(p.tokenLayersDone * 1000 / max(p.tokenLayersTotal, 1), detail: detail)
        }
        bar.finish()
        note(PassSpeed.line(label, tokens: tokens, seconds: Date().timeIntervalSince(start), config: config))
        return result
    }

    private func note(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }

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
