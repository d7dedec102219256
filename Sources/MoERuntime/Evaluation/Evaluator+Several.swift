import Foundation

extension Evaluator {
    /// `evaluate(model:tokens:context:reference:)` for several models against one reference,
    /// computing the reference logits once per window. Reports are in the order of `models`,
    /// each equal to what `evaluate` gives for that model alone.
    public static func evaluate(models: [ErnieModel], tokens: [Int32], context: Int, reference: ErnieModel,
                                progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> [EvaluationReport] {
        for model in models { try validate(model: model, tokens: tokens, context: context, reference: reference) }
        let windows = windows(tokens, context: context)
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
        return totals.map { report($0, tokens: tokens.count, windows: windows.count, context: context, withReference: true) }
    }
}
