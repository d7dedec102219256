import Foundation
import MoEFormat

/// How big a bundle may be: bytes of stored weights (before zstd), or bits per weight over the
/// checkpoint's parameters (pruned experts' parameters included, so pruning lowers it).
public enum SizeTarget: Sendable, Equatable {
    case bytes(Int)
    case bitsPerWeight(Double)

    public func bytes(parameters: Int) -> Int {
        switch self {
        case .bytes(let b): b
        case .bitsPerWeight(let bpw): Int((bpw * Double(parameters) / 8).rounded(.down))
        }
    }

    public var text: String {
        switch self {
        case .bytes(let b): "\(b) bytes"
        case .bitsPerWeight(let bpw): String(format: "%.3f bits/weight", bpw)
        }
    }
}

/// What the size solver chose: a format for every quantizable weight, the experts it prunes,
/// and the KL divergence it expects. Stored in the bundle as `moepack-plan.json`.
public struct SizePlan: Codable, Sendable, Equatable {
    public static let fileName = "moepack-plan.json"

    public struct Unit: Codable, Sendable, Equatable {
        /// "layer 3 expert 12" or a tensor name.
        public var name: String
        public var layer: Int?
        public var expert: Int?
        public var tensorClass: TensorClass
        /// A format name, or "pruned".
        public var choice: String
        public var bytes: Int
        /// The expected increase of KL divergence (nats per token) this choice causes.
        public var price: Double
    }

    public var target: String
    public var targetBytes: Int
    /// Stored bytes of every tensor as planned (weights, scales, norms, router; before zstd).
    public var weightBytes: Int
    /// Parameters of the checkpoint.
    public var parameters: Int
    public var predictedKL: Double
    /// Tokens the prices were measured on.
    public var priceTokens: Int
    /// Every quantizable 2-D weight the bundle keeps, by name.
    public var formats: [String: WeightFormat]
    /// Kept original expert ids of each MoE layer that prunes any, by layer.
    public var kept: [String: [Int]]
    public var units: [Unit]

    public var bitsPerWeight: Double { parameters > 0 ? Double(weightBytes * 8) / Double(parameters) : 0 }

    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(self)
    }

    public init(jsonData data: Data) throws {
        let decoder = JSONDecoder()
        self = try decoder.decode(Self.self, from: data)
    }

    init(target: String, targetBytes: Int, weightBytes: Int, parameters: Int, predictedKL: Double, priceTokens: Int,
         formats: [String: WeightFormat], kept: [String: [Int]], units: [Unit]) {
        self.target = target
        self.targetBytes = targetBytes
        self.weightBytes = weightBytes
        self.parameters = parameters
        self.predictedKL = predictedKL
        self.priceTokens = priceTokens
        self.formats = formats
        self.kept = kept
        self.units = units
    }

    /// Units per (class, choice), e.g. "routed_experts q4g64: 31", for summaries.
    public var mix: [(tensorClass: TensorClass, choice: String, units: Int, bytes: Int)] {
        var groups: [String: (TensorClass, String, Int, Int)] = [:]
        for u in units {
            let key = "\(u.tensorClass.rawValue) \(u.choice)"
            let g = groups[key] ?? (u.tensorClass, u.choice, 0, 0)
            groups[key] = (g.0, g.1, g.2 + 1, g.3 + u.bytes)
        }
        return groups.keys.sorted().map { let g = groups[$0]!; return (g.0, g.1, g.2, g.3) }
    }
}
