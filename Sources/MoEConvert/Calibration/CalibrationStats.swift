import Foundation
import MoEFormat

/// Routing and input statistics of one model on one sample of text, as `moepack calibrate`
/// writes them (versioned JSON, see docs/calibrate.md). Per-expert arrays are indexed by
/// original expert id.
public struct CalibrationStats: Codable, Sendable, Equatable {
    public static let formatName = "moepack-calibration"
    /// Version 2 added `inputs`; version 1 files (routing statistics only) still load.
    public static let currentVersion = 2
    public static let readableVersions = 1...2

    public var format: String
    public var version: Int
    public var model: ModelInfo
    public var data: DataInfo
    public var layers: [LayerStats]
    /// Per decoder layer, the input statistics of its products; nil in a version 1 file.
    public var inputs: [LayerInputs]?

    public struct ModelInfo: Codable, Sendable, Equatable {
        /// `ModelIdentity` of the model that was run.
        public var identity: String
        public var identityScheme: String
        public var architecture: String
        public var numExperts: Int
        public var moeK: Int
        public var moeLayers: [Int]
    }

    public struct DataInfo: Codable, Sendable, Equatable {
        public var source: String
        /// Tokens run through the model (every token is routed once per MoE layer).
        public var tokens: Int
        public var windows: Int
        public var context: Int
    }

    public struct LayerStats: Codable, Sendable, Equatable {
        public var layer: Int
        /// Times each expert was among the top-k of a token.
        public var count: [Int]
        /// Sum of the renormalised routing weights each expert received when chosen.
        public var weightSum: [Double]
        /// weightSum / count (0 for never-chosen experts).
        public var weightMean: [Double]
        /// Mean L2 norm of the routing-weighted expert output over the tokens that chose it
        /// (the REAP saliency; 0 for never-chosen experts).
        public var outputNormMean: [Double]
        /// Sum of the router's softmax probability over all tokens, chosen or not.
        public var probabilitySum: [Double]
        /// Mean over tokens of the entropy of the router softmax (nats; log E is uniform).
        public var routerEntropy: Double
        /// Entropy of the share of top-k selections across experts (nats).
        public var selectionEntropy: Double
    }

    /// Per input channel, the sum of squares over a set of tokens, and their number: the
    /// diagonal of XᵀX for the rows X a product read (an importance matrix, as llama.cpp's
    /// imatrix; the mean square of channel c is sumSquares[c] / tokens).
    public struct ChannelStats: Codable, Sendable, Equatable {
        public var tokens: Int
        public var sumSquares: [Double]
    }

    /// The inputs of one decoder layer's products over the calibration tokens.
    public struct LayerInputs: Codable, Sendable, Equatable {
        public var layer: Int
        /// q, k and v: every token.
        public var attention: ChannelStats
        /// gate and up of a dense layer's MLP (nil in a MoE layer).
        public var mlp: ChannelStats?
        /// gate and up of a MoE layer's shared experts (nil without them).
        public var sharedExperts: ChannelStats?
        /// gate and up of each routed expert, over the tokens routed to it, by original expert
        /// id (nil in a dense layer; zeros for an expert no token chose, or one pruned away).
        public var experts: [ChannelStats]?
    }

    public func layer(_ index: Int) -> LayerStats? { layers.first { $0.layer == index } }

    // MARK: JSON

    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

    public func write(to url: URL) throws {
        try jsonData().write(to: url, options: .atomic)
    }

    /// Parses a stats file, checking the format name and version first so a file from another
    /// version gets a version error rather than a missing-field error.
    public init(jsonData data: Data, source: String = "stats file") throws {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CalibrationError("\(source) is not a JSON object")
        }
        guard object["format"] as? String == Self.formatName else {
            throw CalibrationError("\(source) is not a moepack calibration file (format is not \"\(Self.formatName)\")")
        }
        guard let version = object["version"] as? Int else { throw CalibrationError("\(source) has no version") }
        guard Self.readableVersions.contains(version) else {
            throw CalibrationError("\(source) has calibration format version \(version); this moepack reads versions \(Self.readableVersions.lowerBound) to \(Self.readableVersions.upperBound) (run calibrate again)")
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do { self = try decoder.decode(Self.self, from: data) } catch {
            throw CalibrationError("\(source) is malformed: \(Self.describe(error))")
        }
        try validate(source: source)
    }

    public init(contentsOf url: URL) throws {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw CalibrationError("cannot read \(url.path)")
        }
        try self.init(jsonData: data, source: url.lastPathComponent)
    }

    init(format: String = formatName, version: Int = currentVersion, model: ModelInfo, data: DataInfo, layers: [LayerStats],
         inputs: [LayerInputs]? = nil) {
        self.format = format
        self.version = version
        self.model = model
        self.data = data
        self.layers = layers
        self.inputs = inputs
    }

    /// Internal consistency: one entry per MoE layer, arrays of numExperts values.
    func validate(source: String) throws {
        let e = model.numExperts
        guard e > 0, model.moeK > 0, model.moeK <= e else {
            throw CalibrationError("\(source): invalid expert counts (num_experts \(e), moe_k \(model.moeK))")
        }
        guard layers.map(\.layer) == model.moeLayers else {
            throw CalibrationError("\(source): layers \(layers.map(\.layer)) do not match moe_layers \(model.moeLayers)")
        }
        for l in layers {
            let sizes = [l.count.count, l.weightSum.count, l.weightMean.count, l.outputNormMean.count, l.probabilitySum.count]
            guard sizes.allSatisfy({ $0 == e }) else {
                throw CalibrationError("\(source): layer \(l.layer) does not have \(e) values per expert")
            }
            guard l.count.allSatisfy({ $0 >= 0 }) else { throw CalibrationError("\(source): layer \(l.layer) has a negative count") }
            let values = l.weightSum + l.weightMean + l.outputNormMean + l.probabilitySum
            guard values.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
                throw CalibrationError("\(source): layer \(l.layer) has a negative or non-finite statistic")
            }
        }
        if let inputs { try validate(inputs, source: source) }
    }

    /// Input statistics: ascending layers, every MoE layer with `numExperts` expert entries and
    /// no other layer with any, one channel count throughout, counts and sums non-negative.
    private func validate(_ inputs: [LayerInputs], source: String) throws {
        guard version >= 2 else { throw CalibrationError("\(source): a version 1 file has no input statistics") }
        guard zip(inputs, inputs.dropFirst()).allSatisfy({ $0.layer < $1.layer }), inputs.allSatisfy({ $0.layer >= 0 }) else {
            throw CalibrationError("\(source): input statistics are not in ascending layer order")
        }
        let width = inputs.first?.attention.sumSquares.count ?? 0
        for l in inputs {
            let isMoE = model.moeLayers.contains(l.layer)
            guard isMoE ? l.experts?.count == model.numExperts && l.mlp == nil : l.experts == nil else {
                throw CalibrationError("\(source): input statistics of layer \(l.layer) do not fit its kind (MoE or dense)")
            }
            for s in [l.attention] + [l.mlp, l.sharedExperts].compactMap({ $0 }) + (l.experts ?? []) {
                guard s.sumSquares.count == width, s.tokens >= 0, s.sumSquares.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
                    throw CalibrationError("\(source): input statistics of layer \(l.layer) are malformed")
                }
            }
        }
    }

    /// Throws unless these stats were measured on the model with this identity.
    public func checkApplies(to identity: String, config: ModelConfig) throws {
        guard identity == model.identity else {
            throw CalibrationError("the calibration stats were measured on a different model (identity \(model.identity.prefix(12))…, this model is \(identity.prefix(12))…)")
        }
        guard config.moeNumExperts == model.numExperts, config.moeLayers == model.moeLayers else {
            throw CalibrationError("the calibration stats do not match this model's experts or MoE layers")
        }
    }

    private static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "missing field \(key.stringValue)"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context),
             DecodingError.dataCorrupted(let context):
            "bad value at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        default: "\(error)"
        }
    }
}

/// A calibration or pruning failure with a message for the user.
public struct CalibrationError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
