import Foundation

/// Why a chat template could not be parsed or rendered. Never a crash: a template feature this
/// interpreter lacks is named, and hostile templates hit a limit.
public enum ChatTemplateError: Error, Equatable, Sendable, CustomStringConvertible {
    case syntax(String)
    case unsupported(String)
    /// The template called `raise_exception(message)` (for example, roles that do not alternate).
    case raised(String)
    case runtime(String)
    case limit(String)

    public var description: String {
        switch self {
        case .syntax(let m): return "chat template syntax error: \(m)"
        case .unsupported(let m): return "chat template uses an unsupported feature: \(m)"
        case .raised(let m): return "chat template refused the conversation: \(m)"
        case .runtime(let m): return "chat template error: \(m)"
        case .limit(let m): return "chat template exceeds a limit: \(m)"
        }
    }
}

/// A parsed chat template (the `chat_template` of tokenizer_config.json), rendered the way
/// transformers' `apply_chat_template` renders it with jinja2.
public struct JinjaTemplate: Sendable {
    let nodes: [JinjaNode]
    public let source: String

    /// Work a render may do: evaluation steps and output characters.
    public static let maxSteps = 1_000_000
    public static let maxOutput = 8 << 20

    public init(_ source: String) throws {
        self.source = source
        nodes = try JinjaParser.parse(source)
    }

    /// Renders with the given top-level variables.
    public func render(_ variables: [String: JinjaValue]) throws -> String {
        var interpreter = JinjaInterpreter(globals: variables)
        try interpreter.run(nodes)
        return interpreter.output
    }
}
