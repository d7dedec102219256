import ArgumentParser
import Foundation
import MoERuntime
import MoETokenizer

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a prompt, streaming it to stdout as it is produced.")

    @Argument(help: "Checkpoint directory or bundle.")
    var model: String

    @Option(help: "The prompt text.")
    var prompt: String

    @Flag(help: "Wrap the prompt as a user turn in the model's chat format.")
    var chat = false

    @Option(help: "System message for --chat.")
    var system: String?

    @Option(help: ArgumentHelp("Variables for the model's chat template with --chat, e.g. enable_thinking=false (Qwen3); repeatable.",
                               valueName: "name=value"))
    var chatVariable: [String] = []

    @Option(help: "Most tokens to generate.")
    var maxTokens = 256

    @Option(help: "Sampling temperature; 0 is greedy (always the most likely token). Without --temperature, --top-k and --top-p, the model's generation_config.json decides as transformers does: greedy unless do_sample is true, then its temperature, top_p and top_k.")
    var temperature: Double?

    @Option(help: "Sample only from the K most likely tokens (0: all).")
    var topK: Int?

    @Option(help: "Sample only from the most likely tokens that together reach probability P (1: all).")
    var topP: Double?

    @Option(help: "Divide the positive logits of tokens already in the text by this and multiply the negative ones (transformers' repetition_penalty); 1 is off. Default: generation_config.json's, else 1.")
    var repetitionPenalty: Double?

    @Option(help: "Subtract this from the logit of every token generated so far (OpenAI's presence_penalty, -2 to 2).")
    var presencePenalty = 0.0

    @Option(help: "Subtract this from a token's logit once per time it was generated (OpenAI's frequency_penalty, -2 to 2).")
    var frequencyPenalty = 0.0

    @Option(help: "Random seed; the same seed gives the same text (default: a random seed, printed).")
    var seed: UInt64?

    @Option(help: "Stop before this text (repeatable).")
    var stop: [String] = []

    func validate() throws {
        if system != nil && !chat { throw ValidationError("--system needs --chat") }
        if maxTokens < 0 { throw ValidationError("--max-tokens must be >= 0") }
    }

    @OptionGroup var cache: CacheOptions
    @OptionGroup var threading: ThreadOptions

    func run() async throws {
        threading.apply()
        let languageModel = try LanguageModel.load(at: model, cachePrecision: cache.precision)
        let seed = self.seed ?? UInt64.random(in: 0...UInt64(UInt32.max))
        let options = GenerationOptions(maxTokens: maxTokens, sampling: sampling(languageModel.generationDefaults, seed: seed),
                                        stopStrings: stop, addBOS: chat ? false : nil)
        try options.validate()
        let text: String
        if chat {
            var messages: [ChatMessage] = []
            if let system { messages.append(ChatMessage(role: "system", content: system)) }
            messages.append(ChatMessage(role: "user", content: prompt))
            text = try languageModel.chatPrompt(messages, variables: try Self.templateVariables(chatVariable))
        } else {
            text = prompt
        }
        let stdout = FileHandle.standardOutput
        var summary: GenerationSummary?
        for try await event in languageModel.makeSession().generate(prompt: text, options: options) {
            switch event {
            case .token(_, let chunk): if !chunk.isEmpty { stdout.write(Data(chunk.utf8)) }
            case .finished(let s): summary = s
            }
        }
        stdout.write(Data("\n".utf8))
        if let summary { printStderr(Self.statistics(summary, sampled: !options.sampling.isGreedy, seed: seed)) }
    }

    /// The flags given, over the model's generation_config.json as transformers reads it.
    func sampling(_ defaults: GenerationDefaults, seed: UInt64) -> SamplingOptions {
        var options = temperature == nil && topK == nil && topP == nil
            ? defaults.transformersSampling
            : SamplingOptions(temperature: temperature ?? 1, topK: topK ?? 0, topP: topP ?? 1)
        options.seed = seed
        options.repetitionPenalty = repetitionPenalty ?? defaults.repetitionPenalty ?? 1
        options.presencePenalty = presencePenalty
        options.frequencyPenalty = frequencyPenalty
        return options
    }

    static func statistics(_ s: GenerationSummary, sampled: Bool, seed: UInt64) -> String {
        var line = "\(s.promptTokens) prompt tokens (" + String(format: "%.1f", s.prefillTokensPerSecond)
            + " tok/s), \(s.generatedTokens) generated (" + String(format: "%.1f", s.decodeTokensPerSecond)
            + " tok/s), finish: \(s.finishReason.rawValue)"
        if sampled { line += ", seed \(seed)" }
        return line
    }
}

extension Run {
    /// `name=value` pairs: true/false, integers and numbers keep their type, anything else is a string.
    static func templateVariables(_ pairs: [String]) throws -> [String: JinjaValue] {
        var variables: [String: JinjaValue] = [:]
        for pair in pairs {
            guard let eq = pair.firstIndex(of: "="), eq != pair.startIndex else {
                throw ValidationError("--chat-variable takes name=value (got \(pair))")
            }
            let name = String(pair[..<eq]), value = String(pair[pair.index(after: eq)...])
            variables[name] = switch value {
            case "true": .bool(true)
            case "false": .bool(false)
            default: Int(value).map(JinjaValue.int) ?? Double(value).map(JinjaValue.double) ?? .string(value)
            }
        }
        return variables
    }
}
