import Foundation
import MoEFormat

/// The text a reference file was made from, as the caller read it.
public struct ReferenceText: Sendable, Equatable {
    /// The file's name, recorded for messages.
    public var source: String
    /// SHA-256 of the text's bytes.
    public var sha256: String

    public init(source: String, sha256: String) {
        self.source = source
        self.sha256 = sha256
    }
}

extension Evaluator {
    /// Default memory for the hidden states of the windows in flight (as calibration's).
    public static let defaultMemoryBudget = 512 << 20

    /// The windows `evaluate` scores: consecutive, non-overlapping, `context` tokens each, the
    /// last kept if it has at least 2 tokens.
    static func windows(_ tokens: [Int32], context: Int) -> [[Int32]] {
        stride(from: 0, to: tokens.count, by: context)
            .map { Array(tokens[$0..<min($0 + context, tokens.count)]) }
            .filter { $0.count >= 2 }
    }

    /// Perplexity with the layer-by-layer engine (`ErnieModel.runLayerByLayer`): memory is one
    /// layer's weights plus the hidden states of the windows in flight, within `memoryBudget`.
    /// Equal to `evaluate(model:tokens:context:)`.
    public static func evaluate(model: ErnieModel, tokens: [Int32], context: Int, memoryBudget: Int,
                                progress: ((LayerPassProgress) -> Void)? = nil) throws -> EvaluationReport {
        try validate(model: model, tokens: tokens, context: context, reference: nil)
        let windows = windows(tokens, context: context)
        var totals = Totals()
        try model.runLayerByLayer(windows, observer: nil, memoryBudget: memoryBudget, progress: progress) { w, logits in
            score(windows[w], logits: logits, referenceLogits: nil, vocab: model.config.vocabSize, into: &totals)
        }
        return report(totals, tokens: tokens.count, windows: windows.count, context: context, withReference: false)
    }

    /// Scores `model` (the reference) layer by layer and writes what KL divergence and top-1
    /// need into a reference file at `path` (`ReferenceRecords`); returns its perplexity.
    public static func saveReference(model: ErnieModel, modelSource: String, tokens: [Int32], context: Int,
                                     text: ReferenceText, to path: String, memoryBudget: Int,
                                     progress: ((LayerPassProgress) -> Void)? = nil) throws -> EvaluationReport {
        try validate(model: model, tokens: tokens, context: context, reference: nil)
        let windows = windows(tokens, context: context)
        let vocab = model.config.vocabSize
        let header = ReferenceHeader(
            encoding: ReferenceRecords.encoding, logProbStep: ReferenceRecords.step, logProbRange: ReferenceRecords.range,
            model: .init(fingerprint: ModelFingerprint.compute(model), fingerprintScheme: ModelFingerprint.scheme,
                         architecture: model.config.architecture.rawValue, vocabSize: vocab,
                         source: URL(fileURLWithPath: modelSource).lastPathComponent),
            data: .init(source: text.source, textSHA256: text.sha256, tokensSHA256: tokensSHA256(tokens),
                        tokens: tokens.count, context: context, windows: windows.count,
                        predictions: windows.reduce(0) { $0 + $1.count - 1 }))
        let writer = try ReferenceFileWriter(path: path, header: header)
        var totals = Totals(), records: [UInt8] = []
        try model.runLayerByLayer(windows, observer: nil, memoryBudget: memoryBudget, progress: progress) { w, logits in
            totals.nll += ReferenceRecords.encode(ids: windows[w], logits: logits, vocab: vocab, into: &records)
            totals.predictions += windows[w].count - 1
            try records.withUnsafeBytes { try writer.append(positions: windows[w].count - 1, records: $0) }
        }
        try writer.finish()
        return report(totals, tokens: tokens.count, windows: windows.count, context: context, withReference: false)
    }

    /// Scores `model` layer by layer against a reference file made by `saveReference` on the
    /// same text with the same windowing, from the model this one was made from (unless
    /// `anyModel`: then only the vocabularies must agree).
    public static func evaluate(model: ErnieModel, tokens: [Int32], context: Int, reference: ReferenceFileReader,
                                text: ReferenceText?, memoryBudget: Int, anyModel: Bool = false,
                                progress: ((LayerPassProgress) -> Void)? = nil) throws -> EvaluationReport {
        try validate(model: model, tokens: tokens, context: context, reference: nil)
        let windows = windows(tokens, context: context)
        try check(reference, model: model, tokens: tokens, context: context, windows: windows.count, text: text,
                  anyModel: anyModel)
        var totals = Totals()
        let vocab = model.config.vocabSize
        try model.runLayerByLayer(windows, observer: nil, memoryBudget: memoryBudget, progress: progress) { w, logits in
            let records = try reference.nextWindow(positions: windows[w].count - 1)
            ReferenceRecords.score(ids: windows[w], logits: logits, records: records, vocab: vocab, into: &totals)
        }
        return report(totals, tokens: tokens.count, windows: windows.count, context: context, withReference: true)
    }

    /// Refuses a reference file made from another model, another text or another windowing.
    static func check(_ reference: ReferenceFileReader, model: ErnieModel, tokens: [Int32], context: Int,
                      windows: Int, text: ReferenceText?, anyModel: Bool) throws {
        let h = reference.header, name = URL(fileURLWithPath: reference.path).lastPathComponent
        guard h.encoding == ReferenceRecords.encoding, h.logProbStep == ReferenceRecords.step else {
            throw RuntimeError("\(name) uses the record encoding \(h.encoding) (step \(h.logProbStep)), which this moepack does not read")
        }
        guard h.model.vocabSize == model.config.vocabSize else {
            throw RuntimeError("\(name) was made for a vocabulary of \(h.model.vocabSize) tokens; this model has \(model.config.vocabSize)")
        }
        let fingerprint = ModelFingerprint.compute(model)
        guard anyModel || (h.model.fingerprintScheme == ModelFingerprint.scheme && h.model.fingerprint == fingerprint) else {
            throw RuntimeError("\(name) was made from a different model (\(h.model.source), fingerprint \(h.model.fingerprint.prefix(12))…; "
                               + "this model is \(fingerprint.prefix(12))…): a reference only scores bundles made from the same checkpoint")
        }
        if let text, text.sha256 != h.data.textSHA256 {
            throw RuntimeError("\(name) was made from a different text (\(h.data.source), sha256 \(h.data.textSHA256.prefix(12))…) "
                               + "than \(text.source) (sha256 \(text.sha256.prefix(12))…)")
        }
        guard tokensSHA256(tokens) == h.data.tokensSHA256, tokens.count == h.data.tokens else {
            throw RuntimeError("\(name) was made from other token ids (\(h.data.tokens) tokens; this text gives \(tokens.count)): "
                               + "the text or the tokenizer differs")
        }
        guard h.data.context == context, h.data.windows == windows else {
            throw RuntimeError("\(name) was made with --context \(h.data.context) (\(h.data.windows) windows); this run uses "
                               + "--context \(context) (\(windows) windows): use the same context")
        }
    }

    static func tokensSHA256(_ tokens: [Int32]) -> String {
        var hash = SHA256Hasher()
        var bytes = [UInt8]()
        bytes.reserveCapacity(tokens.count * 4)
        for t in tokens { withUnsafeBytes(of: t.littleEndian) { bytes.append(contentsOf: $0) } }
        bytes.withUnsafeBytes { hash.update($0) }
        return hash.finalizeHex()
    }

    static func report(_ t: Totals, tokens: Int, windows: Int, context: Int, withReference: Bool) -> EvaluationReport {
        let n = Double(t.predictions)
        return EvaluationReport(
            context: context, tokens: tokens, windows: windows, predictedTokens: t.predictions,
            totalNLL: t.nll, perplexity: exp(t.nll / n),
            reference: withReference ? ReferenceComparison(
                meanKLDivergence: t.kl / n, top1Agreement: Double(t.agreements) / n,
                referencePerplexity: exp(t.referenceNLL / n)) : nil)
    }
}
