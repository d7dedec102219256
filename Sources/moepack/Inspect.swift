import ArgumentParser
import Foundation
import MoEFormat

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a checkpoint or a bundle: architecture, parameters, formats, size.")

    @Argument(help: "Checkpoint directory or .mpk bundle.")
    var path: String

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @Flag(help: "Bundles: check every payload checksum (header and manifest are always checked).")
    var verify = false

    func run() throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
            let bundle = try BundleFile(path: path)
            var summary = BundleSummary(bundle: bundle)
            if verify { summary.verifiedSections = try bundle.verifyPayloads() }
            print(json ? try JSONOutput.encode(summary) : summary.text)
            return
        }
        let summary = try CheckpointSummary(checkpoint: Checkpoint(directory: URL(fileURLWithPath: path)))
        print(json ? try JSONOutput.encode(summary) : summary.text)
    }
}
