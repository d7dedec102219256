import ArgumentParser
import Foundation
import MoEConvert
import MoEFormat

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a checkpoint under a profile and pack it into one .mpk bundle.",
        discussion: """
        Profiles: \(ShippedProfiles.all.keys.sorted().joined(separator: ", ")), or a path to a .toml file. See docs/convert.md.
        Size targets: --target-size 9.5GiB or --target-bpw 3.2 with --calibration STATS.json and --data TEXT give every routed
        expert its own format (or prune it) and every other weight its own, at the least predicted KL that fits (docs/size-targets.md).
        """)

    @Argument(help: "Checkpoint directory.")
    var checkpoint: String

    @Option(help: "Shipped profile name or path to a profile .toml (with a size target: only its compression counts; default wint4).")
    var profile: String?

    @Option(help: "Output bundle path (.mpk).")
    var output: String

    @Option(help: "Calibration statistics (moepack calibrate): calibration-aware rounding, and the prune stage of a profile that has one.")
    var calibration: String?

    @Option(help: """
        calibrated (the default with --calibration: grid scales chosen by each input channel's importance), \
        gptq (error-compensating rounding fitted on --data, kept row by row where it beats the nearest on held-out tokens) or nearest.
        """)
    var rounding: Rounding?

    @Option(help: "Override the profile's prune ratio.")
    var pruneRatio: Double?

    @OptionGroup(title: "Size target")
    var size: SizeTargetOptions

    @Flag(help: "Print one JSON object describing the bundle instead of text.")
    var json = false

    func run() throws {
        let target = try size.target
        guard self.profile != nil || target != nil else { throw ValidationError("give --profile, or a size target (--target-size / --target-bpw)") }
        let profile = try Profile.load(self.profile ?? "wint4")
        if target != nil, pruneRatio != nil { throw ValidationError("a size target chooses the pruning itself: leave out --prune-ratio") }
        if target != nil, profile.prune != nil { throw ValidationError("a size target chooses the pruning itself: give a profile without a prune stage") }
        let source = try Checkpoint(directory: URL(fileURLWithPath: checkpoint))
        let windows = try size.gptqWindows(checkpoint: source, rounding: rounding)
        // A size target prices with the matrices of all layers when they fit; the bundle is then
        // rounded with those, else with a streamed pass that keeps one layer's at a time.
        let hessians = try windows.flatMap { target != nil ? try SizeTargetOptions.hessians(checkpoint: source, windows: $0) : nil }
        if let windows, hessians == nil { try SizeTargetOptions.checkStreamedPass(checkpoint: source, windows: windows) }
        let plan = try target.map { target in
            let (_, plan) = try size.plan(checkpoint: checkpoint, calibration: calibration, rounding: rounding,
                                          hessians: hessians, target: target)
            FileHandle.standardError.write(Data((SizeTargetOptions.summary(plan) + "\n").utf8))
            return plan
        }
        let progress: (@Sendable (ConvertProgress) -> Void)? = isatty(2) != 0 ? ConvertProgressDisplay.show : nil
        let stage = try calibration.map { try CalibrationPruneStage(statsFile: URL(fileURLWithPath: $0)) }
        if rounding == .calibrated && stage == nil { throw ValidationError("--rounding calibrated needs --calibration STATS.json") }
        // A version 1 stats file (no input statistics) still prunes; it rounds to nearest unless asked otherwise.
        let importance = try stage.flatMap { try rounding.importance(stats: $0.stats) }
        let options = ConvertOptions(profile: profile, pruneStage: stage, pruneRatio: pruneRatio, importance: importance,
                                     compensation: hessians.map { .hessians($0) } ?? windows.map { .pass(windows: $0) },
                                     plan: plan, progress: progress)
        let summary = try Converter.convert(checkpoint: checkpoint, output: output, options: options)
        if progress != nil { FileHandle.standardError.write(Data("\n".utf8)) }
        print(json ? try JSONOutput.encode(summary) : summary.text)
    }
}

enum Rounding: String, ExpressibleByArgument, CaseIterable {
    case calibrated, gptq, nearest
}

extension Rounding? {
    /// The importance the nearest rounding uses (for gptq: where it falls back), from a stats
    /// file; with no --rounding, calibrated when the file has input statistics.
    func importance(stats: CalibrationStats) throws -> ImportanceMap? {
        switch self ?? (stats.inputs != nil ? .calibrated : .nearest) {
        case .nearest: nil
        case .calibrated: try ImportanceMap(stats: stats)
        case .gptq: stats.inputs != nil ? try ImportanceMap(stats: stats) : nil
        }
    }
}

enum ConvertProgressDisplay {
    @Sendable static func show(_ p: ConvertProgress) {
        let fraction = p.sourceBytesTotal > 0 ? Double(p.sourceBytesDone) / Double(p.sourceBytesTotal) : 1
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let line = String(format: "\r[%@] %d/%d tensors, %.1f/%.1f MB read, %.1f MB written",
                          bar, p.tensorsDone, p.tensorsTotal, Double(p.sourceBytesDone) / 1e6,
                          Double(p.sourceBytesTotal) / 1e6, Double(p.bytesWritten) / 1e6)
        FileHandle.standardError.write(Data(line.utf8))
    }
}
