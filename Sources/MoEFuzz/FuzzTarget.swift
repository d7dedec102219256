import Foundation

/// The parsers that read untrusted bytes, each as a fuzz target: one input in, every error
/// swallowed. A thrown error is the right answer to bad input; a finding is a crash (trap,
/// sanitizer report, failed invariant), a hang or a runaway allocation.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// A `.safetensors` file: header length, JSON header, offsets; then every tensor read.
    case safetensors
    /// config.json, then the tensor layout every command derives from it.
    case config
    /// A `.mpk` bundle: header, manifest, validation, payloads (checksums fixed up as well).
    case bundle
    /// A bundle manifest (JSON) inside a well-formed header, so every input reaches the JSON.
    case manifest
    /// tokenizer.model (SentencePiece protobuf), then encode and decode.
    case tokenizerModel = "tokenizer-model"
    /// tokenizer_config.json, special_tokens_map.json or added_tokens.json with a fixed model.
    case tokenizerConfig = "tokenizer-config"
    /// Chat messages through the chat template and the tokenizer.
    case chatTemplate = "chat-template"
    /// A POST /v1/completions body through the server's validators.
    case completionRequest = "completion-request"
    /// A POST /v1/chat/completions body through the server's validators and the chat template.
    case chatRequest = "chat-request"

    /// Runs one input; returns the error the code under test threw, nil when it accepted it.
    @discardableResult
    public func run(_ data: Data) -> (any Error)? {
        do {
            switch self {
            case .safetensors: try FormatTargets.safetensors(data)
            case .config: try FormatTargets.config(data)
            case .bundle: try BundleTargets.bundle(data)
            case .manifest: try BundleTargets.manifest(data)
            case .tokenizerModel: try TokenizerTargets.model(data)
            case .tokenizerConfig: try TokenizerTargets.config(data)
            case .chatTemplate: TokenizerTargets.chatTemplate(data)
            case .completionRequest: try RequestTargets.completion(data)
            case .chatRequest: try RequestTargets.chat(data)
            }
            return nil
        } catch {
            return error
        }
    }
}

/// A failed invariant is a finding: it stops the process like any other crash.
func expect(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("fuzz invariant: \(message())") }
}
