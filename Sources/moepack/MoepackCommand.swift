import ArgumentParser

@main
struct Moepack: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moepack",
        abstract: "Compress Mixture-of-Experts checkpoints into one bundle and run them on a CPU.",
        discussion: """
        MODEL is a Hugging Face checkpoint directory (config.json + *.safetensors) or a .mpk bundle.
        See docs/ for every command, the bundle format and the profiles.
        """,
        subcommands: [Quickstart.self, Inspect.self, Calibrate.self, Convert.self, Run.self, Eval.self, Serve.self, Bench.self,
                      Logits.self, Tokenize.self, Synth.self, PruneEval.self, Export.self, Plan.self]
    )
}
