import Foundation
import MoEKernels

/// Quality of a model on a token sequence: perplexity over non-overlapping windows and, against a
/// reference model, how far its next-token distributions are from the reference's.
///
/// Windows: the tokens are cut into consecutive non-overlapping windows of `context` tokens (the
/// last, shorter window is kept if it has at least 2 tokens). Each window runs on its own from
/// position 0; position i predicts token i+1, so a window of n tokens gives n-1 predictions.
public enum Evaluator {
    public static func evaluate(model: ErnieModel, tokens: [Int32], context: Int,
                                reference: ErnieModel? = nil,
                                progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> EvaluationReport {
        try validate(model: model, tokens: tokens, context: context, reference: reference)
        let windows = windows(tokens, context: context)
        var totals = Totals()
        let cache = model.makeCache(capacity: context)
        let referenceCache = reference?.makeCache(capacity: context)
        let vocab = model.config.vocabSize
        progress?(0, windows.count)
        for (index, window) in windows.enumerated() {
            try Task.checkCancellation()
            let ids = window
            cache.reset()
            let logits = try model.forward(ids, cache: cache)
            var referenceLogits: [Float]?
            if let reference, let referenceCache {
                referenceCache.reset()
                referenceLogits = try reference.forward(ids, cache: referenceCache)
            }
            score(ids, logits: logits, referenceLogits: referenceLogits, vocab: vocab, into: &totals)
            progress?(index + 1, windows.count)
        }
        return report(totals, tokens: tokens.count, windows: windows.count, context: context, withReference: reference != nil)
    }

    static func validate(model: ErnieModel, tokens: [Int32], context: Int, reference: ErnieModel?) throws {
        let limit = model.config.maxPositionEmbeddings
        guard context >= 2 else { throw RuntimeError("context must be at least 2 tokens (got \(context))") }
        guard context <= limit else {
            throw RuntimeError("context \(context) is larger than the model's limit of \(limit) positions")
        }
        guard tokens.count >= 2 else {
            throw RuntimeError("the data has \(tokens.count) token(s); perplexity needs at least 2")
        }
        if let reference {
            guard reference.config.vocabSize == model.config.vocabSize else {
                throw RuntimeError("the reference model's vocabulary (\(reference.config.vocabSize)) differs from the model's (\(model.config.vocabSize))")
            }
            guard context <= reference.config.maxPositionEmbeddings else {
                throw RuntimeError("context \(context) is larger than the reference model's limit of \(reference.config.maxPositionEmbeddings) positions")
            }
        }
    }

    /// Adds the predictions of one window: position i scores token i+1.
    static func score(_ ids: [Int32], logits: [Float], referenceLogits: [Float]?, vocab: Int,
                              into totals: inout Totals) {
        logits.withUnsafeBufferPointer { model in
            for position in 0..<(ids.count - 1) {
                let row = model.baseAddress! + position * vocab
                let target = Int(ids[position + 1])
                let logZ = moe_log_sum_exp(row, vocab)
                totals.nll += logZ - Double(row[target])
                if let referenceLogits {
                    referenceLogits.withUnsafeBufferPointer { reference in
                        let referenceRow = reference.baseAddress! + position * vocab
                        let referenceLogZ = moe_log_sum_exp(referenceRow, vocab)
                        totals.referenceNLL += referenceLogZ - Double(referenceRow[target])
                        totals.kl += moe_kl_divergence(referenceRow, referenceLogZ, row, logZ, vocab)
                        if moe_argmax(referenceRow, vocab) == moe_argmax(row, vocab) { totals.agreements += 1 }
                    }
                }
                totals.predictions += 1
            }
        }
    }

    struct Totals {
        var nll = 0.0, referenceNLL = 0.0, kl = 0.0
        var agreements = 0, predictions = 0
    }
}

public struct EvaluationReport: Sendable, Codable, Equatable {
    public var context: Int
    /// Tokens in the data.
    public var tokens: Int
    public var windows: Int
    /// Positions scored: the tokens of every window but its first.
    public var predictedTokens: Int
    /// Sum of −log p(next token), natural log.
    public var totalNLL: Double
    /// exp(totalNLL / predictedTokens).
    public var perplexity: Double
    public var reference: ReferenceComparison?
}

public struct ReferenceComparison: Sendable, Codable, Equatable {
    /// Mean over scored positions of KL(reference ‖ model), in nats.
    public var meanKLDivergence: Double
    /// Fraction of scored positions where both models' most likely next token is the same.
    public var top1Agreement: Double
    /// The reference model's perplexity on the same windows.
    public var referencePerplexity: Double
}
