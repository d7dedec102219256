import ArgumentParser
import Foundation
import MoEConvert
import MoEFormat
import MoERuntime

/// The whole pipeline on the built-in tiny model: inspect, calibrate, convert with pruning,
/// evaluate against the f32 reference, measure decode speed, generate.
struct Quickstart: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the whole pipeline on the built-in tiny model (or --model) and print a summary.",
        discussion: """
        Steps: inspect the checkpoint, calibrate on its calibration split, convert with the \
        wint4-prune25 profile (error-compensating rounding fitted on the calibration split), \
        evaluate the bundle against the f32 checkpoint on held-out text (perplexity, KL \
        divergence, top-1 agreement), measure decode speed, and generate a few sentences. Each \
        step is also a command of its own (see README.md).
        """)

    @Option(help: "Checkpoint directory with calibration.txt and heldout.txt (default: the built-in tiny model).")
    var model: String?

    @Option(help: "Profile for the bundle.")
    var profile = "wint4-prune25"

    @Option(help: "Where to write the stats and bundle (default: a temporary folder).")
    var workDir: String?

    @Option(help: "Prompt for the generated sample.")
    var prompt = "It is a truth universally acknowledged, that"

    @OptionGroup var threading: ThreadOptions

    func run() throws {
        threading.apply()
        guard let source = model.map({ URL(fileURLWithPath: $0) }) ?? BuiltinModel.directory else {
            throw ValidationError("the built-in model is missing from this checkout (Sources/moepack/Resources/tiny-moe)")
        }
        let fm = FileManager.default
        let calibrationText = source.appendingPathComponent("calibration.txt")
        let heldout = source.appendingPathComponent("heldout.txt")
        for file in [calibrationText, heldout] where !fm.fileExists(atPath: file.path) {
            throw ValidationError("\(file.path) is missing")
        }
        let work = URL(fileURLWithPath: workDir ?? fm.temporaryDirectory.appendingPathComponent("moepack-quickstart-\(getpid())").path)
        try fm.createDirectory(at: work, withIntermediateDirectories: true)
        let statsURL = work.appendingPathComponent("stats.json")
        let bundleURL = work.appendingPathComponent("model.mpk")
        try? fm.removeItem(at: bundleURL)

        step("1/6 inspect")
        let summary = try CheckpointSummary(checkpoint: Checkpoint(directory: source))
        say(summary.text)

        step("2/6 calibrate on \(calibrationText.lastPathComponent)")
        let stats = try Calibration.run(modelPath: source.path, data: calibrationText)
        try stats.write(to: statsURL)
        say("routing statistics of \(stats.data.tokens) tokens → \(statsURL.path)")

        // As `convert --calibration stats.json --rounding gptq --data calibration.txt`, when one
        // layer's input Gram matrices fit in a quarter of the memory; else as `--rounding calibrated`.
        let checkpoint = try Checkpoint(directory: source)
        let compensate = InputHessians.largestLayerBytes(config: checkpoint.config) <= Int(ProcessInfo.processInfo.physicalMemory) / 4
        step("3/6 convert with \(profile)" + (compensate ? ", error-compensating rounding fitted on \(calibrationText.lastPathComponent)" : ""))
        let loaded = try Profile.load(profile)
        let stage = loaded.prune != nil ? try CalibrationPruneStage(stats: stats) : nil
        let windows = compensate ? try SizePlanner.windows(checkpoint: checkpoint, data: calibrationText,
                                                           maxTokens: Calibrator.defaultMaxTokens, context: Calibrator.defaultContext) : nil
        let bundle = try Converter.convert(checkpoint: source.path, output: bundleURL.path,
                                           options: ConvertOptions(profile: loaded, pruneStage: stage,
                                                                   importance: try ImportanceMap(stats: stats),
                                                                   compensation: windows.map { .pass(windows: $0) }))
        say(bundle.text)

        step("4/6 evaluate on \(heldout.lastPathComponent) against the f32 checkpoint")
        let reference = try LanguageModel.load(at: source.path)
        let compressed = try LanguageModel.load(at: bundleURL.path)
        let text = try String(contentsOf: heldout, encoding: .utf8)
        let tokens = try reference.tokenizer.encode(text, addBOS: false, parseSpecialTokens: false)
        let report = try Evaluator.evaluate(model: compressed.model, tokens: tokens, context: 256, reference: reference.model)

        step("5/6 decode speed")
        let benchmark = ModelBenchmark()
        let referenceSpeed = try benchmark.decodeRate(reference.model, context: 16, tokens: 64)
        let bundleSpeed = try benchmark.decodeRate(compressed.model, context: 16, tokens: 64)

        step("6/6 generate")
        let session = compressed.makeSession()
        let options = GenerationOptions(maxTokens: 48, sampling: .greedy)
        say(prompt, newline: false)
        try session.generate(tokens: compressed.tokenizer.encodePrompt(prompt), options: options) { event in
            if case .token(_, let piece) = event { say(piece, newline: false) }
        }
        say("\n")

        let comparison = report.reference!
        let kept = bundle.experts.reduce(0) { $0 + $1.kept }, total = bundle.experts.reduce(0) { $0 + $1.total }
        func f(_ x: Double, _ d: Int) -> String { String(format: "%.\(d)f", x) }
        say("""
        summary                      f32 checkpoint    \(profile) bundle
        size                         \(pad(CheckpointSummary.bytes(summary.sizeOnDisk)))\(CheckpointSummary.bytes(bundle.fileSize))
        bits per weight              \(pad("32"))\(f(bundle.bitsPerWeight, 2)) (experts \(f(bundle.expertBitsPerWeight ?? 0, 2)))
        routed experts kept          \(pad("\(total)"))\(kept)
        perplexity (held-out)        \(pad(f(comparison.referencePerplexity, 2)))\(f(report.perplexity, 2))
        KL divergence vs f32         \(pad("0"))\(f(comparison.meanKLDivergence, 4))
        top-1 agreement vs f32       \(pad("100%"))\(f(100 * comparison.top1Agreement, 1))%
        decode tokens/s              \(pad(f(referenceSpeed, 0)))\(f(bundleSpeed, 0))
        files in \(work.path)
        """)
    }

    private func pad(_ s: String) -> String { s.padding(toLength: 18, withPad: " ", startingAt: 0) }

    private func step(_ title: String) { say("\n== \(title)") }

    /// Unbuffered output, so the steps and the generated text appear as they happen.
    private func say(_ text: String, newline: Bool = true) {
        FileHandle.standardOutput.write(Data((newline ? text + "\n" : text).utf8))
    }
}
