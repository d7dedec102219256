import ArgumentParser
import Foundation
import MoEConvert
import MoEFormat

/// The options of a size target, shared by `convert` and `plan` (docs/size-targets.md).
struct SizeTargetOptions: ParsableArguments {
    @Option(help: "Size target: stored bytes of the weights before zstd, e.g. 9.5GiB or 700M (needs --calibration and --data).")
    var targetSize: String?

    @Option(help: "Size target in bits per weight over the checkpoint's parameters, e.g. 3.2 (needs --calibration and --data).")
    var targetBpw: Double?

    @Option(help: "The calibration text (plain text or JSONL, like calibrate's --data): prices a size target, and --rounding gptq fits on it.")
    var data: String?

    @Option(help: "Tokens of --data each price measurement scores.")
    var priceTokens = SizePlanner.defaultPriceTokens

    @Option(help: "With --rounding gptq: the tokens of --data whose inputs it fits (and holds out a quarter of).")
    var gptqTokens = Calibrator.defaultMaxTokens

    @Option(help: "With a size target: write the plan (KL-against-size frontier, choices per layer and expert) as .html.")
    var report: String?

    var target: SizeTarget? {
        get throws {
            switch (targetSize, targetBpw) {
            case (nil, nil): return nil
            case (.some, .some): throw ValidationError("give --target-size or --target-bpw, not both")
            case (.some(let s), nil):
                guard let bytes = ByteSize.parse(s) else { throw ValidationError("--target-size must be a size such as 9.5GiB or 700M") }
                return .bytes(bytes)
            case (nil, .some(let b)):
                guard b.isFinite, b > 0, b <= 64 else { throw ValidationError("--target-bpw must be in (0, 64]") }
                return .bitsPerWeight(b)
            }
        }
    }

    func validate() throws {
        _ = try target
        guard priceTokens > 0 else { throw ValidationError("--price-tokens must be positive") }
        guard gptqTokens > 0 else { throw ValidationError("--gptq-tokens must be positive") }
        if let report, !report.hasSuffix(".html") { throw ValidationError("--report must end in .html") }
    }

    /// For `--rounding gptq`: the windows of --data it fits on, nil for the other roundings.
    func gptqWindows(checkpoint: Checkpoint, rounding: Rounding?) throws -> [[Int32]]? {
        guard rounding == .gptq else { return nil }
        guard let data else { throw ValidationError("--rounding gptq needs the calibration text (--data FILE)") }
        return try SizePlanner.windows(checkpoint: checkpoint, data: URL(fileURLWithPath: data),
                                       maxTokens: gptqTokens, context: Calibrator.defaultContext)
    }

    /// Every weight's input Gram matrices over `windows`, all at once (what a size target prices
    /// with), or nil with a note on stderr when they would take more than half of the memory.
    static func hessians(checkpoint: Checkpoint, windows: [[Int32]]) throws -> InputHessians? {
        let need = InputHessians.bytes(config: checkpoint.config)
        let have = Int(ProcessInfo.processInfo.physicalMemory)
        guard need <= have / 2 else {
            FileHandle.standardError.write(Data(String(format: "note: the plan prices with calibrated rounding: the Gram matrices of all weights' inputs would take %.1f GB, more than half of this machine's %.1f GB (the bundle is still rounded with gptq, one layer at a time)\n",
                                                       Double(need) / 1e9, Double(have) / 1e9).utf8))
            return nil
        }
        let line = ProgressLine(label: "gptq: input statistics", total: 1000)
        let hessians = try InputHessians.collect(checkpoint: checkpoint, windows: windows) { p in
            line.update(p.tokenLayersDone * 1000 / max(p.tokenLayersTotal, 1), detail: "layer \(p.layer + 1)/\(p.layers)")
        }
        line.finish()
        return hessians
    }

    /// Checks that a converter's streamed gptq pass fits: one layer's Gram matrices and every
    /// window's hidden states in half of the memory.
    static func checkStreamedPass(checkpoint: Checkpoint, windows: [[Int32]]) throws {
        let c = checkpoint.config
        let layer = InputHessians.largestLayerBytes(config: c)
        let states = windows.reduce(0) { $0 + $1.count } * c.hiddenSize * 4
        let have = Int(ProcessInfo.processInfo.physicalMemory)
        guard layer + states <= have / 2 else {
            throw ValidationError(String(format: "--rounding gptq needs %.1f GB (one layer's input Gram matrices and the hidden states of --gptq-tokens tokens), more than half of this machine's %.1f GB; lower --gptq-tokens or use --rounding calibrated",
                                         Double(layer + states) / 1e9, Double(have) / 1e9))
        }
    }

    /// Prices every choice and solves for `target`; prints progress on stderr.
    func plan(checkpoint path: String, calibration: String?, rounding: Rounding?, hessians: InputHessians? = nil,
              target: SizeTarget) throws -> (SizePlanner, SizePlan) {
        guard let calibration else { throw ValidationError("a size target needs calibration statistics (--calibration STATS.json)") }
        guard let data else { throw ValidationError("a size target needs the price text (--data FILE, the calibration text)") }
        let checkpoint = try Checkpoint(directory: URL(fileURLWithPath: path))
        let stats = try CalibrationStats(contentsOf: URL(fileURLWithPath: calibration))
        let importance = try rounding.importance(stats: stats)
        var planner = try SizePlanner(checkpoint: checkpoint, stats: stats, importance: importance, hessians: hessians)
        let windows = try SizePlanner.windows(checkpoint: checkpoint, data: URL(fileURLWithPath: data), maxTokens: priceTokens)
        var line: ProgressLine? = nil
        var stage = ""
        try planner.price(windows: windows) { p in
            if p.stage != stage { line?.finish(); stage = p.stage; line = ProgressLine(label: "plan: \(p.stage)", total: p.total) }
            line?.update(p.done)
        }
        line?.finish()
        let plan = try planner.plan(target)
        if let report { try PlanReport.html(planner: planner, plan: plan).write(toFile: report, atomically: true, encoding: .utf8) }
        return (planner, plan)
    }

    static func summary(_ plan: SizePlan) -> String {
        var lines = [String(format: "plan          %@: %ld of %ld bytes (%.1f%%), %.3f bits/weight, predicted KL %.5f on %ld tokens",
                            plan.target, plan.weightBytes, plan.targetBytes, 100 * Double(plan.weightBytes) / Double(max(plan.targetBytes, 1)),
                            plan.bitsPerWeight, plan.predictedKL, plan.priceTokens)]
        for m in plan.mix {
            lines.append("  \(m.tensorClass.rawValue.padding(toLength: 16, withPad: " ", startingAt: 0)) \(m.choice.padding(toLength: 9, withPad: " ", startingAt: 0)) \(String(format: "%5ld", m.units)) units \(String(format: "%12ld", m.bytes)) bytes")
        }
        return lines.joined(separator: "\n")
    }
}
