import ArgumentParser
import Foundation
import MoEFormat
import MoERuntime

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prefill and decode speed and how close decode gets to the memory-bandwidth limit.",
        discussion: """
        Decoding a token reads every active weight once, so the floor on time per token is \
        (active weight bytes) / (memory bandwidth). bench measures the bandwidth itself with a \
        STREAM-style read test and reports the fraction reached. Prefill is compared with \
        OpenBLAS sgemm on a matrix of the model's hidden size. The report names the CPU (model \
        name, x86 family and model) and the kernel path that ran. See docs/performance.md.
        """)

    @Argument(help: "Checkpoint directory or bundle.")
    var model: String

    @Option(help: "Prompt tokens for the prefill measurement.")
    var promptTokens = 128

    @Option(help: "Tokens decoded per run.")
    var genTokens = 64

    @Option(help: "Runs of each measurement (the median is reported).")
    var runs = 5

    @Option(help: "Sequences decoded together for the batched-decode measurement (1: skip).")
    var batch = 8

    @OptionGroup var cache: CacheOptions
    @OptionGroup var threading: ThreadOptions

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        guard promptTokens >= 1, genTokens >= 1, runs >= 1, batch >= 1 else {
            throw ValidationError("--prompt-tokens, --gen-tokens, --runs and --batch must be at least 1")
        }
    }

    func run() throws {
        threading.apply()
        var options = ModelBenchmark.Options()
        options.promptTokens = promptTokens
        options.generatedTokens = genTokens
        options.runs = runs
        options.batch = batch
        options.cachePrecision = cache.precision
        let report = try ModelBenchmark(options: options).run(modelPath: model, threads: threading.threads) { message in
            FileHandle.standardError.write(Data("bench: \(message)\n".utf8))
        }
        if json {
            print(try JSONOutput.encode(report))
            return
        }
        func f(_ x: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", x) }
        func serialLine(_ r: ModelBenchmark.Report) -> String {
            guard let single = r.decodeSerialFraction, let batched = r.batchSerialFraction else { return "" }
            return "\nserial         outside the kernel pool's jobs: \(f(100 * single))% of one sequence's decode time, "
                + "\(f(100 * batched))% of the batched steps' (work on one thread)"
        }
        let spread = report.decodeTokensPerSecondRuns
        print("""
        model          \(report.model)
        cpu            \(report.cpu), kernel path \(report.kernelPath)
        threads        \(report.threads) (OpenBLAS core: \(report.blasCore))
        load           \(f(report.loadSeconds, 3)) s\(report.zstdGBpsPerCore.map { " (zstd \(f($0, 2)) GB/s per core)" } ?? ""), weights \(CheckpointSummary.bytes(report.weightBytes)), peak RSS \(CheckpointSummary.bytes(report.peakRSSBytes))
        prefill        \(f(report.prefillTokensPerSecond)) tokens/s (\(report.promptTokens) tokens), \(f(report.prefillGFLOPS)) GFLOP/s vs sgemm \(f(report.sgemmGFLOPS)) GFLOP/s
        decode         \(f(report.decodeTokensPerSecond)) tokens/s (median of \(spread.count), range \(f(spread.min() ?? 0))–\(f(spread.max() ?? 0)))
        batched        \(report.batchDecodeTokensPerSecond.map { "\(report.batchStreams) sequences: \(f($0)) tokens/s together, \(f(report.batchSpeedup ?? 0, 2))x one sequence (median of \(report.batchSpeedupRuns.count) paired runs)" } ?? "skipped")\(serialLine(report))
        decode @ctx    \(report.decodeAtContext.sorted { Int($0.key)! < Int($1.key)! }.map { "\($0.key): \(f($0.value)) tok/s" }.joined(separator: ", ")) (KV cache \(report.kvCachePrecision))
        per token      \(CheckpointSummary.bytes(report.activeWeightBytesPerToken)) of active weights
        bandwidth      \(f(report.memoryBandwidthGBps)) GB/s measured (\(report.memoryBandwidthMethod)); decode reaches \(f(100 * report.decodeBandwidthFraction))% of the limit
        """)
    }
}
