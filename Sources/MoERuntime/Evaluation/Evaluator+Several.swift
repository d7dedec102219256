import Foundation

extension Evaluator {
    /// `evaluate(model:tokens:context:reference:)` for several models against one reference,
    /// computing the reference logits once per window. Reports are in the order of `models`,
    /// each equal to what `evaluate` gives for that model alone.
    public static func evaluate(models: [ErnieModel], tokens: [Int32], context: Int, reference: ErnieModel,
                                progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> [EvaluationReport] {
        for model in models { try validate(model: model, tokens: tokens, context: context, reference: reference) }
        let windows = stride(from: 0, to: tokens.count, by: context)
            .map { Array(tokens[$0..<min($0 + context, tokens.count)]) }
            .filter { $0.count >= 2 }
        var totals = [Totals](repeating: Totals(), count: models.count)
        let referenceCache = reference.makeCache(capacity: context)
        let caches = models.map { $0.makeCache(capacity: context) }
        let vocab = reference.config.vocabSize
        for (index, ids) in windows.enumerated() {
            try Task.checkCancellation()
            referenceCache.reset()
            let referenceLogits = try reference.forward(ids, cache: referenceCache)
            for (m, model) in models.enumerated() {
                caches[m].reset()
                let logits = try model.forward(ids, cache: caches[m])
                score(ids, logits: logits, referenceLogits: referenceLogits, vocab: vocab, into: &totals[m])
            }
            progress?(index + 1, windows.count)
        }
        return totals.map { t in
            let n = Double(t.predictions)
            return EvaluationReport(
                context: context, tokens: tokens.count, windows: windows.count, predictedTokens: t.predictions,
                totalNLL: t.nll, perplexity: exp(t.nll / n),
                reference: ReferenceComparison(meanKLDivergence: t.kl / n, top1Agreement: Double(t.agreements) / n,
                                               referencePerplexity: exp(t.referenceNLL / n)))
        }
    }
}
