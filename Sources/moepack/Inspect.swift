import ArgumentParser
import Foundation
import MoEFormat

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a checkpoint, a bundle or an exported GGUF file: architecture, parameters, formats, size.")

    @Argument(help: "Checkpoint directory, .mpk bundle or .gguf file.")
    var path: String

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @Flag(help: "Bundles: check every payload checksum (header and manifest are always checked).")
    var verify = false

    func run() throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
            if let gguf = try ggufSummary() {
                print(gguf)
                return
            }
            let bundle = try BundleFile(path: path)
            var summary = BundleSummary(bundle: bundle)
            if verify { summary.verifiedSections = try bundle.verifyPayloads() }
            print(json ? try JSONOutput.encode(summary) : summary.text)
            return
        }
        let summary = try CheckpointSummary(checkpoint: Checkpoint(directory: URL(fileURLWithPath: path)))
        print(json ? try JSONOutput.encode(summary) : summary.text)
    }

    /// A GGUF file (e.g. from `moepack export`): its architecture, key metadata and tensor types.
    func ggufSummary() throws -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        let magic = try handle.read(upToCount: 4)
        try? handle.close()
        guard magic == Data("GGUF".utf8) else { return nil }
        let g = try GGUFReader(data: Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped),
                               name: (path as NSString).lastPathComponent)
        func text(_ v: GGUFValue?) -> String {
            switch v {
            case .uint32(let x)?: "\(x)"
            case .int32(let x)?: "\(x)"
            case .float32(let x)?: "\(x)"
            case .bool(let x)?: "\(x)"
            case .string(let s)?: s.count > 60 ? "\(s.prefix(60))..." : s
            case .byteStrings(let a)?: "[\(a.count) strings]"
            case .strings(let a)?: "[\(a.count) strings]"
            case .float32s(let a)?: "[\(a.count) floats]"
            case .int32s(let a)?: "[\(a.count) ints]"
            case nil: "(other type)"
            }
        }
        let architecture = text(g.metadata["general.architecture"])
        var lines = ["GGUF v\(g.version), architecture \(architecture), \(g.tensors.count) tensors, \(g.keys.count) metadata keys"]
        let types = Dictionary(g.tensors.map { ($0.info.type.name, 1) }, uniquingKeysWith: +)
        lines.append("types: " + types.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
        for key in g.keys where !key.hasPrefix("tokenizer.ggml.tokens") && !key.hasPrefix("tokenizer.ggml.scores")
            && !key.hasPrefix("tokenizer.ggml.token_type") && key != "tokenizer.chat_template" {
            lines.append("  \(key) = \(text(g.metadata[key]))")
        }
        return lines.joined(separator: "\n")
    }
}
