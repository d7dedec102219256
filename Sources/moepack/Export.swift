import ArgumentParser
import Foundation
import MoEExport
import MoEFormat

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a bundle in another engine's format: GGUF for llama.cpp, compressed-tensors for vLLM.",
        discussion: """
        --to gguf writes one GGUF v3 file for llama.cpp: ERNIE 4.5 MoE as ernie4_5-moe, Qwen3-MoE as \
        qwen3moe (every layer MoE), Mixtral as llama with experts (no sliding window). The 4-bit formats copy exactly: int4g32/q4g32 -> Q4_0, int4g32a -> Q4_1, nl4g32 -> IQ4_NL, \
        the g64/g128 variants by repeating each group's scale per 32 weights, q3/q2 as Q4_0 codes; \
        f32/f16/bf16 as themselves. int8 (one f32 scale per row) becomes Q8_0 with f16 scales per 32 \
        weights, a small rounding the output reports. A layer's experts share one GGUF tensor: when their \
        formats differ they get the nearest type that holds them all (said in the output).

        --to compressed-tensors writes a Hugging Face model folder (config.json with quantization_config, \
        safetensors shards with an index, the tokenizer files) in the pack-quantized format vLLM and \
        transformers load, for every family. Symmetric 4-, 3- and 2-bit codes become int4 groups exactly, \
        int8 becomes int8 per channel; scales and float weights are written in --dtype (float16 keeps \
        every 4-bit scale exact). nl4g32 and asymmetric int4 have no pack-quantized form: the export \
        refuses them unless --dequantize-unsupported.

        --to safetensors writes the same folder with every weight decoded to --dtype and no \
        quantization block: a plain checkpoint of the values moepack computes with, for any tool \
        that reads Hugging Face checkpoints (and moepack's own f32 reference path).

        Pruned experts (--pruned): drop removes them and their router rows (the smallest file; needs \
        the same expert count in every layer), mask writes zeros with a correction bias of -1e9 so \
        they are never chosen (exact routing; needs a correction bias, as ERNIE has). The default is \
        drop when possible, else mask. Outputs are written under a temporary name and renamed when \
        complete. See docs/export.md.
        """)

    enum Target: String, ExpressibleByArgument, CaseIterable {
        case gguf
        case compressedTensors = "compressed-tensors"
        case safetensors
    }

    enum ExportDType: String, ExpressibleByArgument, CaseIterable {
        case float16, bfloat16, float32
        var dtype: DType { switch self { case .float16: .f16; case .bfloat16: .bf16; case .float32: .f32 } }
    }

    @Argument(help: "The .mpk bundle to export.")
    var bundle: String

    @Option(help: "Target format: gguf, compressed-tensors or safetensors.")
    var to: Target

    @Option(help: "Output: a file for gguf, a folder for compressed-tensors and safetensors.")
    var output: String

    @Option(help: "Pruned experts: drop or mask (default: drop when every layer keeps the same count, else mask).")
    var pruned: PrunedExpertsMode?

    @Option(help: "compressed-tensors, safetensors: the model dtype for scales and float weights (float16, bfloat16, float32; default float16).")
    var dtype: ExportDType?

    @Flag(help: "compressed-tensors: write nl4g32 and asymmetric int4 tensors as floats instead of refusing them.")
    var dequantizeUnsupported = false

    @Option(help: "compressed-tensors, safetensors: largest safetensors shard, e.g. 5GB or 500MiB (default 5GB).")
    var shardSize: String?

    @Flag(help: "Replace the output if it exists.")
    var force = false

    func run() throws {
        let file = try BundleFile(path: bundle)
        switch to {
        case .gguf:
            guard dtype == nil, !dequantizeUnsupported, shardSize == nil else {
                throw ValidationError("--dtype, --dequantize-unsupported and --shard-size are options of the folder targets")
            }
            let report = try GGUFExporter.export(bundle: file, to: output, force: force, pruned: pruned)
            print(report.text)
        case .compressedTensors, .safetensors:
            guard let shard = ByteSize.parse(shardSize ?? "5GB"), shard > 0 else {
                throw ValidationError("--shard-size must be a size such as 5GB or 500MiB")
            }
            var options = CompressedTensorsOptions()
            options.dtype = (dtype ?? .float16).dtype
            options.pruned = pruned
            options.dequantizeUnsupported = dequantizeUnsupported
            options.shardBytes = Int(clamping: shard)
            options.force = force
            options.packQuantized = to == .compressedTensors
            let report = try CompressedTensorsExporter.export(bundle: file, to: output, options: options)
            print(report.text)
        }
        print("wrote \(output)")
    }
}

extension PrunedExpertsMode: ExpressibleByArgument {}
