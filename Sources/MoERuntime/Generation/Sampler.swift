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

    public init(temperature: Double = 0, topK: Int = 0, topP: Double = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    public static let greedy = SamplingOptions()

    public var isGreedy: Bool { temperature <= 0 || topK == 1 }

    public func validate() throws {
        guard temperature.isFinite, temperature >= 0 else {
            throw RuntimeError("temperature must be a finite number >= 0 (got \(temperature))")
        }
        guard topK >= 0 else { throw RuntimeError("top-k must be >= 0 (got \(topK))") }
        guard topP > 0, topP <= 1 else { throw RuntimeError("top-p must be in (0, 1] (got \(topP))") }
    }
}

/// Picks tokens from logits: greedy, or temperature, then top-k, then top-p (the order transformers
/// applies them), then a draw from the renormalised distribution with a seeded generator.
public struct Sampler: Sendable {
    public let options: SamplingOptions
    private var random: SeededRandom

    public init(options: SamplingOptions) {
        self.options = options
        random = SeededRandom(seed: options.seed)
    }

    public mutating func sample(_ logits: [Float]) -> Int32 {
        logits.withUnsafeBufferPointer { sample($0) }
    }

    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        if options.isGreedy { return Sampler.argmax(logits) }
        let candidates = candidates(logits)
        let u = random.nextUnit()
        var cumulative = 0.0
        for c in candidates {
            cumulative += c.probability
            if u < cumulative { return c.id }
        }
        return candidates.last?.id ?? Sampler.argmax(logits)
    }

    /// The tokens that can be drawn with their renormalised probabilities: most likely first when
    /// top-k or top-p truncates, else every token in id order.
    public func candidates(_ logits: [Float]) -> [(id: Int32, probability: Double)] {
        logits.withUnsafeBufferPointer { candidates($0) }
    }

    public func candidates(_ logits: UnsafeBufferPointer<Float>) -> [(id: Int32, probability: Double)] {
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
