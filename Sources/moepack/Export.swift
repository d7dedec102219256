import ArgumentParser
import Foundation
import MoEExport
import MoEFormat

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a bundle in another engine's format: GGUF for llama.cpp.",
        discussion: """
        --to gguf writes one GGUF v3 file for llama.cpp (architecture ernie4_5-moe; ERNIE 4.5 MoE bundles \
        only for now). The 4-bit formats copy exactly: int4g32/q4g32 -> Q4_0, int4g32a -> Q4_1, nl4g32 -> \
        IQ4_NL, the g64/g128 variants by repeating each group's scale per 32 weights; f32/f16/bf16 as \
        themselves. int8 (one f32 scale per row) becomes Q8_0 with f16 scales per 32 weights, a small \
        rounding the output reports. A layer's experts share one GGUF tensor: when their formats differ \
        they get the nearest type that holds them all (said in the output). Pruned experts are written as \
        zeros with a correction bias of -1e9, so llama.cpp never routes to them (routing is unchanged). \
        The file is written under a temporary name and renamed when complete. See docs/export.md.
        """)

    enum Target: String, ExpressibleByArgument, CaseIterable { case gguf }

    @Argument(help: "The .mpk bundle to export.")
    var bundle: String

    @Option(help: "Target format: gguf.")
    var to: Target

    @Option(help: "Output file.")
    var output: String

    @Flag(help: "Replace the output file if it exists.")
    var force = false

    func run() throws {
        let file = try BundleFile(path: bundle)
        let report = try GGUFExporter.export(bundle: file, to: output, force: force)
        print(report.text)
        print("wrote \(output)")
    }
}
