/// What generation needs from a tokenizer. `MoETokenizer.Tokenizer` conforms; an app can plug in
/// any other implementation (for instance one read from a bundle or a test double).
public protocol TextTokenizer: Sendable {
    /// Ids of `text`; with `addBOS` the beginning-of-sequence id first; with `parseSpecialTokens`
    /// special-token text such as `<|end_of_sentence|>` becomes its single id.
    func encode(_ text: String, addBOS: Bool, parseSpecialTokens: Bool) throws -> [Int32]
    /// Text of `ids`; with `skipSpecialTokens` control and special tokens produce no text.
    func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String
    var bosTokenID: Int32? { get }
    var eosTokenID: Int32? { get }
}
