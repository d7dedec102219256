import MoETokenizer

/// What generation needs from a tokenizer. `MoETokenizer.Tokenizer` conforms; an app can plug in
/// any other implementation (for instance a test double).
public protocol TextTokenizer: Sendable {
    /// Ids of `text`; with `addBOS` the beginning-of-sequence id first; with `parseSpecialTokens`
    /// special-token text such as `<|end_of_sentence|>` becomes its single id.
    func encode(_ text: String, addBOS: Bool, parseSpecialTokens: Bool) throws -> [Int32]
    /// A plain prompt's ids with the special tokens the tokenizer's configuration adds (BOS,
    /// EOS; tokenizer_config.json's add_bos_token and add_eos_token), as transformers does.
    func encodePrompt(_ text: String) throws -> [Int32]
    /// Text of `ids`; with `skipSpecialTokens` control and special tokens produce no text.
    func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String
    var bosTokenID: Int32? { get }
    /// Ids that end a reply (eos and the like).
    var stopTokenIDs: Set<Int32> { get }
    /// A conversation as prompt text in the model's chat format, ending with the assistant's marker.
    func chatPrompt(_ messages: [ChatMessage]) throws -> String
    /// The same with extra variables for the model's chat template (transformers'
    /// `apply_chat_template(..., **kwargs)`, e.g. Qwen3's `enable_thinking`).
    func chatPrompt(_ messages: [ChatMessage], variables: [String: JinjaValue]) throws -> String
    /// The bytes one token stands for in a text (log-probability listings name tokens by them).
    func tokenBytes(_ id: Int32) -> [UInt8]
}

extension TextTokenizer {
    /// A tokenizer without a template language ignores the variables.
    public func chatPrompt(_ messages: [ChatMessage], variables: [String: JinjaValue]) throws -> String {
        try chatPrompt(messages)
    }

    /// The token decoded on its own (a piece at the start of a text may lose its leading space).
    public func tokenBytes(_ id: Int32) -> [UInt8] { Array(decode([id], skipSpecialTokens: false).utf8) }
}

extension Tokenizer: TextTokenizer {
    public var bosTokenID: Int32? { bosID }
    public var stopTokenIDs: Set<Int32> { stopIDs }

    public func chatPrompt(_ messages: [ChatMessage]) throws -> String {
        try renderChat(messages, addGenerationPrompt: true)
    }

    public func chatPrompt(_ messages: [ChatMessage], variables: [String: JinjaValue]) throws -> String {
        try renderChat(messages, addGenerationPrompt: true, variables: variables)
    }
}
