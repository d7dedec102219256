import MoEKernels

/// The log-probability of a generated token under the model's distribution at its position, with
/// the most likely alternatives there. The distribution is the softmax of the model's own logits:
/// before penalties, temperature, top-k and top-p (as vLLM reports them by default).
public struct TokenLogprobs: Sendable, Equatable {
    public struct Alternative: Sendable, Equatable {
        public var token: Int32
        public var logprob: Float
    }

    public var token: Int32
    public var logprob: Float
    /// The `count` most likely tokens, most likely first (the lower id first on a tie).
    public var top: [Alternative]

    /// `token`'s log-probability in `logits` and the `count` most likely tokens.
    public init(token: Int32, logits: UnsafeBufferPointer<Float>, top count: Int) {
        // log softmax: x - log sum exp(x), in double
        let logNorm = logits.baseAddress.map { moe_log_sum_exp_f32($0, Int64(logits.count)) } ?? 0
        func logSoftmax(_ i: Int) -> Float { Float(Double(logits[i]) - logNorm) }
        self.token = token
        logprob = Int(token) < logits.count && token >= 0 ? logSoftmax(Int(token)) : -.infinity
        top = Ops.topIndices(logits, count: count).map { Alternative(token: Int32($0), logprob: logSoftmax($0)) }
    }
}
