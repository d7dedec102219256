/// Every way a file handed to moepack can be wrong. Each case carries enough context
/// (file, tensor, field) for a one-line message a user can act on.
public struct FormatError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
