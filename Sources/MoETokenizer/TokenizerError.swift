import Foundation

/// Errors thrown while loading a tokenizer. Encoding and decoding never throw.
public enum TokenizerError: Error, Equatable, CustomStringConvertible {
    /// The model file could not be parsed or is inconsistent.
    case invalidModel(String)
    /// The model is valid but uses a feature this implementation does not handle.
    case unsupportedModel(String)
    /// A tokenizer configuration file (JSON) is malformed.
    case invalidConfig(String)
    /// A file could not be read.
    case fileNotFound(String)

    public var description: String {
        switch self {
        case .invalidModel(let m): return "invalid tokenizer model: \(m)"
        case .unsupportedModel(let m): return "unsupported tokenizer model: \(m)"
        case .invalidConfig(let m): return "invalid tokenizer config: \(m)"
        case .fileNotFound(let m): return "tokenizer file not found: \(m)"
        }
    }
}
