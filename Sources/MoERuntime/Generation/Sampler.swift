import Foundation

/// How the next token is chosen from the logits.
public struct SamplingOptions: Sendable, Equatable, Codable {
    /// Softmax temperature; 0 (or below) means greedy: always the most likely token.
    public var temperature: Double
    /// Keep only the `topK` most likely tokens; 0 keeps all.
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability sums to at least `topP`; 1 keeps all.
    public var topP: Double
    /// Seed of the random generator; the same seed and logits give the same tokens everywhere.
    public var seed: UInt64
    /// transformers' `repetition_penalty`: the logit of every token already in the sequence (prompt
    /// or generated) is divided by this when positive and multiplied by it when negative; 1 is off.
    public var repetitionPenalty: Double
    /// OpenAI's `presence_penalty`: subtracted once from the logit of every token generated so far.
    public var presencePenalty: Double
    /// OpenAI's `frequency_penalty`: subtracted from a token's logit once per time it was generated.
    public var frequencyPenalty: Double

    public init(temperature: Double = 0, topK: Int = 0, topP: Double = 1, seed: UInt64 = 0,
                repetitionPenalty: Double = 1, presencePenalty: Double = 0, frequencyPenalty: Double = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
        self.repetitionPenalty = repetitionPenalty
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
    }

    public static let greedy = SamplingOptions()

    public var isGreedy: Bool { temperature <= 0 || topK == 1 }

    /// Whether the logits are changed by what the sequence already holds.
    public var hasPenalties: Bool { repetitionPenalty != 1 || presencePenalty != 0 || frequencyPenalty != 0 }

    public func validate() throws {
        guard temperature.isFinite, temperature >= 0 else {
            throw RuntimeError("temperature must be a finite number >= 0 (got \(temperature))")
        }
        guard topK >= 0 else { throw RuntimeError("top-k must be >= 0 (got \(topK))") }
        guard topP > 0, topP <= 1 else { throw RuntimeError("top-p must be in (0, 1] (got \(topP))") }
        guard repetitionPenalty.isFinite, repetitionPenalty > 0 else {
            throw RuntimeError("repetition penalty must be a finite number > 0 (got \(repetitionPenalty))")
        }
        for (name, value) in [("presence", presencePenalty), ("frequency", frequencyPenalty)] {
            guard value >= -2, value <= 2 else { throw RuntimeError("\(name) penalty must be in [-2, 2] (got \(value))") }
        }
    }

    private enum CodingKeys: String, CodingKey {
        case temperature, topK, topP, seed, repetitionPenalty, presencePenalty, frequencyPenalty
    }

    /// Options saved before the penalties existed decode with them off.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(temperature: try c.decode(Double.self, forKey: .temperature),
                  topK: try c.decode(Int.self, forKey: .topK),
                  topP: try c.decode(Double.self, forKey: .topP),
                  seed: try c.decode(UInt64.self, forKey: .seed),
                  repetitionPenalty: try c.decodeIfPresent(Double.self, forKey: .repetitionPenalty) ?? 1,
                  presencePenalty: try c.decodeIfPresent(Double.self, forKey: .presencePenalty) ?? 0,
                  frequencyPenalty: try c.decodeIfPresent(Double.self, forKey: .frequencyPenalty) ?? 0)
    }
}

/// Picks tokens from logits: the penalties first (repetition, then presence and frequency, as
/// vLLM orders them), then greedy, or temperature, then top-k, then top-p (the order transformers
/// applies them), then a draw from the renormalised distribution with a seeded generator.
///
/// A sampler follows one sequence: with penalties it remembers the prompt it was made with and
/// every token it picked, so make a new one per sequence and take every token from it.
public struct Sampler: Sendable {
    public let options: SamplingOptions
    private var random: SeededRandom
    /// Tokens of the prompt and of the generated text (repetition penalty).
    private var sequenceTokens: Set<Int32> = []
    /// Times each token was generated (presence and frequency penalties).
    private var generatedCounts: [Int32: Int] = [:]

    /// `prompt`: the tokens the sequence starts with, which the repetition penalty counts.
    public init(options: SamplingOptions, prompt: [Int32] = []) {
        self.options = options
        random = SeededRandom(seed: options.seed)
        if options.repetitionPenalty != 1 { sequenceTokens = Set(prompt) }
    }

    public mutating func sample(_ logits: [Float]) -> Int32 {
        logits.withUnsafeBufferPointer { sample($0) }
    }

    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        guard options.hasPenalties else { return pick(logits) }
        let token = penalized(logits).withUnsafeBufferPointer { pick($0) }
        sequenceTokens.insert(token)
        generatedCounts[token, default: 0] += 1
        return token
    }

    private mutating func pick(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        if options.isGreedy { return Sampler.argmax(logits) }
        let candidates = drawable(logits)
        let u = random.nextUnit()
        var cumulative = 0.0
        for c in candidates {
            cumulative += c.probability
            if u < cumulative { return c.id }
        }
        return candidates.last?.id ?? Sampler.argmax(logits)
    }

    /// The logits with the penalties of what the sequence holds so far applied.
    public func penalized(_ logits: UnsafeBufferPointer<Float>) -> [Float] {
        var out = Array(logits)
        let repetition = Float(options.repetitionPenalty)
        if repetition != 1 {
            for token in sequenceTokens where token >= 0 && Int(token) < out.count {
                let value = out[Int(token)]
                out[Int(token)] = value < 0 ? value * repetition : value / repetition
            }
        }
        for (token, count) in generatedCounts where token >= 0 && Int(token) < out.count {
            out[Int(token)] -= Float(options.frequencyPenalty * Double(count) + options.presencePenalty)
        }
        return out
    }

    /// The tokens that can be drawn next with their renormalised probabilities (after the
    /// penalties of the sequence so far): most likely first when top-k or top-p truncates, else
    /// every token in id order.
    public func candidates(_ logits: [Float]) -> [(id: Int32, probability: Double)] {
        logits.withUnsafeBufferPointer { candidates($0) }
    }

    public func candidates(_ logits: UnsafeBufferPointer<Float>) -> [(id: Int32, probability: Double)] {
        guard options.hasPenalties else { return drawable(logits) }
        return penalized(logits).withUnsafeBufferPointer { drawable($0) }
    }

    private func drawable(_ logits: UnsafeBufferPointer<Float>) -> [(id: Int32, probability: Double)] {
        if options.isGreedy { return [(Sampler.argmax(logits), 1)] }
        // NaN logits (a broken model) count as impossible rather than poisoning the sort.
        let values = logits.map { $0.isNaN ? -Float.infinity : $0 }
        var order = Array(0..<values.count)
        let truncates = (options.topK > 0 && options.topK < values.count) || options.topP < 1
        if truncates {
            order.sort { a, b in values[a] != values[b] ? values[a] > values[b] : a < b }
        }
        if options.topK > 0, options.topK < order.count { order.removeLast(order.count - options.topK) }
        guard let top = values.max(), top > -.infinity else { return [(Sampler.argmax(logits), 1)] }
        var weights = order.map { exp((Double(values[$0]) - Double(top)) / options.temperature) }
        var total = weights.reduce(0, +)
        if options.topP < 1 {
            var cumulative = 0.0
            var keep = 0
            while keep < weights.count {
                cumulative += weights[keep] / total
                keep += 1
                if cumulative >= options.topP { break }
            }
            weights.removeLast(weights.count - keep)
            order.removeLast(order.count - keep)
            total = weights.reduce(0, +)
        }
        return zip(order, weights).compactMap { id, w in
            w > 0 ? (Int32(id), w / total) : nil
        }
    }

    /// Index of the largest logit; the lowest index wins a tie (as torch.argmax does).
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        var best = 0
        var bestValue = -Float.infinity
        for i in 0..<logits.count where logits[i] > bestValue {
            best = i
            bestValue = logits[i]
        }
        return Int32(best)
    }

    public static func argmax(_ logits: [Float]) -> Int32 {
        logits.withUnsafeBufferPointer { argmax($0) }
    }
}
