import ArgumentParser
import Foundation
import MoEFormat
import MoERuntime

struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the logits of a token sequence as a float32 [T, vocab] NumPy .npy file.")

    @Argument(help: "Checkpoint directory or .mpk bundle.")
    var model: String

    @Option(help: "Comma-separated token ids, e.g. 1,2,3.")
    var tokens: String

    @Option(help: "Output .npy path.")
    var output: String

    @OptionGroup var threading: ThreadOptions

    func run() throws {
        threading.apply()
        let ids = try parseTokenList(tokens)
        let model = try ModelLoader.model(at: model)
        let logits = try model.logits(ids)
        try Npy.encode(logits, shape: [ids.count, model.config.vocabSize])
            .write(to: URL(fileURLWithPath: output), options: .atomic)
    }
}

func parseTokenList(_ text: String) throws -> [Int32] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        .map { $0.trimmingCharacters(in: .whitespaces) }
    guard !parts.isEmpty, !text.trimmingCharacters(in: .whitespaces).isEmpty else {
        throw ValidationError("--tokens is empty")
    }
    return try parts.map { part in
        guard let id = Int32(part), id >= 0 else { throw ValidationError("--tokens: '\(part)' is not a token id") }
        return id
    }
}
