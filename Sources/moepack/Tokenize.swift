import ArgumentParser
import Foundation
import MoERuntime

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids of every line of a text file, one line of space-separated ids per line.")

    @Argument(help: "Checkpoint directory or bundle (its tokenizer is used).")
    var model: String

    @Option(help: "UTF-8 text file.")
    var file: String

    @Flag(help: "Put the beginning-of-sequence id before every non-empty line.")
    var addBOS = false

    @Flag(help: "Turn special-token text such as <|end_of_sentence|> into its id.")
    var parseSpecial = false

    func run() throws {
        let tokenizer = try ModelLoader.tokenizer(at: model)
        let text = try readTextFile(file)
        var output = ""
        for line in TextLines.split(text) {
            let ids = line.isEmpty ? [] : tokenizer.encode(line, addBOS: addBOS, parseSpecialTokens: parseSpecial)
            output += ids.map(String.init).joined(separator: " ") + "\n"
        }
        FileHandle.standardOutput.write(Data(output.utf8))
    }
}
