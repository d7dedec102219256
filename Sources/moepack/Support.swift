import ArgumentParser
import Foundation
import MoEFormat
import MoERuntime

#if canImport(Glibc)
import Glibc
#endif

/// The built-in tiny model shipped in the package's resources (used by quickstart and as a
/// tokenizer source for synthetic checkpoints).
enum BuiltinModel {
    static var directory: URL? {
        let candidates = [
            // Source tree next to this file: works for `swift run` from any working directory.
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Resources/tiny-moe"),
        ]
        return candidates.first { FileManager.default.fileExists(atPath: $0.appendingPathComponent("config.json").path) }
    }
}

/// A one-line progress indicator on stderr, drawn only when stderr is a terminal.
final class ProgressLine {
    let label: String
    let total: Int
    private let enabled = isatty(STDERR_FILENO) != 0
    private var last = -1

    init(label: String, total: Int) {
        self.label = label
        self.total = max(total, 1)
    }

    /// Redraws the line when the percentage changes; `detail` replaces the "(done/total)" count.
    func update(_ done: Int, detail: String? = nil) {
        guard enabled else { return }
        let percent = done * 100 / total
        guard percent != last else { return }
        last = percent
        let width = 30
        let filled = width * done / total
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        // Padded so a shorter line covers the previous one.
        let text = "\(label) [\(bar)] \(percent)% \(detail ?? "(\(done)/\(total))")"
        FileHandle.standardError.write(Data("\r\(text.padding(toLength: max(text.count, 100), withPad: " ", startingAt: 0))".utf8))
    }

    /// "1h02m", "3m05s", "42s".
    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        if s >= 3600 { return String(format: "%dh%02dm", s / 3600, s % 3600 / 60) }
        if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return "\(s)s"
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }
}

/// `--kv-cache`: how the model's KV caches store keys and values.
struct CacheOptions: ParsableArguments {
    @Option(name: .customLong("kv-cache"),
            help: "KV cache precision, f16 or f32 (default: f16 for a quantized bundle, f32 for a checkpoint or an f32/bf16 bundle).")
    var precision: KVCache.Precision?
}

extension KVCache.Precision: ExpressibleByArgument {}

/// `--threads` for every command that runs a model: the kernels' worker pool splits the
/// matrix work of each token (and attention heads, and sgemm slices) over this many threads.
struct ThreadOptions: ParsableArguments {
    @Option(help: "Threads for the model's matrix work; defaults to one per core.")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    func validate() throws {
        if threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func apply() {
        KernelConfig.setThreads(threads)
        // Activation buffers (a batch's logits, expert inputs) are allocated and freed every step.
        KernelConfig.keepHeapMemory()
    }
}

/// Sizes on the command line: a number of bytes with an optional K, M, G or T suffix (powers of
/// 1024; "MiB", "GB" and the like read the same).
enum ByteSize {
    static func parse(_ text: String) -> Int? {
        var s = text.trimmingCharacters(in: .whitespaces).uppercased()
        for suffix in ["IB", "B"] where s.hasSuffix(suffix) { s.removeLast(suffix.count); break }
        let units: [Character: Double] = ["K": 1024, "M": 1024 * 1024, "G": 1024 * 1024 * 1024, "T": 1024 * 1024 * 1024 * 1024]
        var scale = 1.0
        if let last = s.last, let unit = units[last] {
            scale = unit
            s.removeLast()
        }
        guard let value = Double(s), value.isFinite, value > 0, value * scale < 9e18 else { return nil }
        let bytes = Int(value * scale)
        return bytes > 0 ? bytes : nil
    }

    /// "1.52 GiB", "340.0 MiB", "912 KiB".
    static func text(_ bytes: Int) -> String {
        let b = Double(bytes)
        if bytes >= 1 << 30 { return String(format: "%.2f GiB", b / Double(1 << 30)) }
        if bytes >= 1 << 20 { return String(format: "%.1f MiB", b / Double(1 << 20)) }
        return "\(bytes / 1024) KiB"
    }
}

/// The speed of a pass over many tokens (calibration, reference scoring), next to what OpenBLAS
/// sgemm reaches on this machine at the model's hidden size: FLOPs are 2 per active parameter
/// per token, as `moepack bench` counts them.
enum PassSpeed {
    static func line(_ label: String, tokens: Int, seconds: Double, config: ModelConfig) -> String {
        let flops = 2.0 * Double(ModelLayout(config: config).parameterCounts.activePerToken) * Double(tokens)
        let sgemm = ModelBenchmark.sgemmGFLOPS(m: 256, n: config.hiddenSize, k: config.hiddenSize, threads: KernelConfig.threads)
        return String(format: "%@: %d tokens in %.1f s, %.1f tokens/s, %.1f GFLOP/s (OpenBLAS sgemm here: %.1f GFLOP/s)",
                      label, tokens, seconds, Double(tokens) / max(seconds, 1e-9), flops / max(seconds, 1e-9) / 1e9, sgemm)
    }
}
