// The example of docs/swift-api.md, compiled and run by SwiftAPIExampleTests.
// Keep the code between the markers identical to the document's code block.
// BEGIN EXAMPLE
import MoERuntime
import MoETokenizer

/// Loads a model, tokenizes, chats with streamed output, and stops a generation early.
func swiftAPIExample(modelPath: String) async throws -> (answer: String, tokensBeforeStop: Int) {
    // Load weights, tokenizer and stop ids once; a LanguageModel is shared by any number of tasks.
    let model = try LanguageModel.load(at: modelPath)

    // The tokenizer on its own.
    let ids = try model.tokenizer.encode("Elizabeth smiled.", addBOS: true, parseSpecialTokens: true)
    print(ids, model.tokenizer.decode(ids, skipSpecialTokens: true))

    // A conversation in the model's chat format (it carries its own begin marker: addBOS false).
    let prompt = try model.chatPrompt([
        ChatMessage(role: "system", content: "You are a helpful assistant."),
        ChatMessage(role: "user", content: "Tell me about Mr. Darcy."),
    ])
    let options = GenerationOptions(
        maxTokens: 48,
        sampling: SamplingOptions(temperature: 0.7, topK: 40, topP: 0.9, seed: 7),
        stopStrings: ["\nUser:"],
        addBOS: false)

    // Stream the answer as text. A session keeps its KV cache, so a follow-up turn that repeats
    // this conversation only computes the new part.
    let session = model.makeSession()
    var answer = ""
    for try await event in session.generate(prompt: prompt, options: options) {
        switch event {
        case .token(_, let text):
            answer += text
        case .finished(let summary):
            print("\(summary.generatedTokens) tokens (\(summary.finishReason)), \(summary.decodeTokensPerSecond) tokens/s")
        }
    }

    // Leaving the loop (or cancelling the task that runs it) stops decoding before the next token.
    var tokens = 0
    for try await event in model.generate(prompt: "It is a truth universally acknowledged",
                                          options: GenerationOptions(maxTokens: 500)) {
        if case .token = event { tokens += 1 }
        if tokens == 5 { break }
    }
    return (answer, tokens)
}
// END EXAMPLE
