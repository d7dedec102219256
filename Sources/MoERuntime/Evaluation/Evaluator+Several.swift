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
        var nll = [Double](repeating: 0, count: models.count), kl = nll
        var agreements = [Int](repeating: 0, count: models.count)
        var referenceNLL = 0.0, predictions = 0
        let referenceCache = reference.makeCache(capacity: context)
        let caches = models.map { $0.makeCache(capacity: context) }
        let vocab = reference.config.vocabSize
        for (index, ids) in windows.enumerated() {
            try Task.checkCancellation()
            referenceCache.reset()
            let referenceLogits = try reference.forward(ids, cache: referenceCache)
            let referenceRows = (0..<(ids.count - 1)).map { logSoftmax(referenceLogits[($0 * vocab)..<(($0 + 1) * vocab)]) }
            for (position, row) in referenceRows.enumerated() { referenceNLL -= row[Int(ids[position + 1])] }
            for (m, model) in models.enumerated() {
                caches[m].reset()
                let logits = try model.forward(ids, cache: caches[m])
                for (position, referenceRow) in referenceRows.enumerated() {
                    let row = logSoftmax(logits[(position * vocab)..<((position + 1) * vocab)])
                    nll[m] -= row[Int(ids[position + 1])]
                    kl[m] += klDivergence(referenceRow, row)
                    if argmax(referenceRow) == argmax(row) { agreements[m] += 1 }
                }
            }
            predictions += ids.count - 1
            progress?(index + 1, windows.count)
        }
        let n = Double(predictions)
        return models.indices.map { m in
            EvaluationReport(
                context: context, tokens: tokens.count, windows: windows.count, predictedTokens: predictions,
                totalNLL: nll[m], perplexity: exp(nll[m] / n),
                reference: ReferenceComparison(meanKLDivergence: kl[m] / n, top1Agreement: Double(agreements[m]) / n,
                                               referencePerplexity: exp(referenceNLL / n)))
        }
    }
}
