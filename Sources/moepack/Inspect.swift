import ArgumentParser
import Foundation
import MoEFormat

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a checkpoint: architecture, layers, parameters, dtypes, size.")

    @Argument(help: "Checkpoint directory.")
    var path: String

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        let summary = try CheckpointSummary(checkpoint: Checkpoint(directory: URL(fileURLWithPath: path)))
        print(json ? try JSONOutput.encode(summary) : summary.text)
    }
}
