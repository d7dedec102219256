import ArgumentParser

@main
struct Moepack: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moepack",
        abstract: "Compress Mixture-of-Experts checkpoints into one bundle and run them on a CPU.",
        discussion: """
        MODEL is a Hugging Face checkpoint directory (config.json + *.safetensors).
        See docs/ for every command, the bundle format and the profiles.
        """,
        subcommands: [Inspect.self, Logits.self, Synth.self, Bench.self, Tokenize.self, Run.self, Eval.self, Serve.self]
    )
}
