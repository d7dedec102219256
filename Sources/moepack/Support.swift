import ArgumentParser
import Foundation
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

    func update(_ done: Int) {
        guard enabled else { return }
        let percent = done * 100 / total
        guard percent != last else { return }
        last = percent
        let width = 30
        let filled = width * done / total
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        FileHandle.standardError.write(Data("\r\(label) [\(bar)] \(percent)% (\(done)/\(total))".utf8))
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
