import ArgumentParser
import Foundation
import MoEConvert
import MoEFormat

/// The size solver alone: what a size target would make of a checkpoint, without writing it.
struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a size target makes of a checkpoint (the solver's choices and predicted KL) without converting.",
        discussion: "Same size-target options as convert. --measure also scores every choice of every weight on its own and reports how well the estimated prices rank them (small models only). See docs/size-targets.md.")

    @Argument(help: "Checkpoint directory.")
    var checkpoint: String

    @Option(help: "Calibration statistics (moepack calibrate).")
    var calibration: String

    @Option(help: "calibrated (the default), gptq (needs --data) or nearest rounding, as convert would use.")
    var rounding: Rounding?

    @OptionGroup(title: "Size target")
    var size: SizeTargetOptions

    @Option(help: "Also measure every choice's price on its own and write the pairs to this .tsv (units × choices model runs).")
    var measure: String?

    @Option(help: "Write the plan as JSON to this file.")
    var output: String?

    func run() throws {
        guard let target = try size.target else { throw ValidationError("give --target-size or --target-bpw") }
        let source = try Checkpoint(directory: URL(fileURLWithPath: checkpoint))
        let hessians = try size.gptqWindows(checkpoint: source, rounding: rounding)
            .flatMap { try SizeTargetOptions.hessians(checkpoint: source, windows: $0) }
        let (planner, plan) = try size.plan(checkpoint: checkpoint, calibration: calibration, rounding: rounding,
                                            hessians: hessians, target: target)
        print(SizeTargetOptions.summary(plan))
        if let output { try plan.jsonData().write(to: URL(fileURLWithPath: output)) }
        if let measure {
            let windows = try SizePlanner.windows(checkpoint: Checkpoint(directory: URL(fileURLWithPath: checkpoint)),
                                                  data: URL(fileURLWithPath: size.data!), maxTokens: size.priceTokens)
            let line = ProgressLine(label: "measure", total: 1000)
            let checks = try planner.measureUnitPrices(windows: windows) { p in
                line.update(p.total > 0 ? p.done * 1000 / p.total : 0, detail: "\(p.stage) \(p.done)/\(p.total)")
            }
            line.finish()
            var tsv = "unit\tchoice\testimated\tmeasured\n"
            for c in checks { tsv += "\(c.unit)\t\(c.choice)\t\(c.estimated)\t\(c.measured)\n" }
            try tsv.write(toFile: measure, atomically: true, encoding: .utf8)
            let rho = SizePlanner.rankCorrelation(checks.map(\.estimated), checks.map(\.measured))
            let pruned = checks.filter { $0.choice == "pruned" }, kept = checks.filter { $0.choice != "pruned" }
            print(String(format: "prices        %ld choices measured: rank correlation %.3f (quantized %.3f, pruned %.3f) → %@", checks.count, rho,
                         SizePlanner.rankCorrelation(kept.map(\.estimated), kept.map(\.measured)),
                         SizePlanner.rankCorrelation(pruned.map(\.estimated), pruned.map(\.measured)), measure))
        }
    }
}
