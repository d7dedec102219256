import Foundation
import MoEFormat

/// Routing statistics of one model on one sample of text, as `moepack calibrate` writes them
/// (versioned JSON, see docs/calibrate.md). Per-expert arrays are indexed by original expert id.
public struct CalibrationStats: Codable, Sendable, Equatable {
    public static let formatName = "moepack-calibration"
    public static let currentVersion = 1

    public var format: String
    public var version: Int
    public var model: ModelInfo
    public var data: DataInfo
    public var layers: [LayerStats]

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
        guard version == Self.currentVersion else {
            throw CalibrationError("\(source) has calibration format version \(version); this moepack reads version \(Self.currentVersion) (run calibrate again)")
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

    init(format: String = formatName, version: Int = currentVersion, model: ModelInfo, data: DataInfo, layers: [LayerStats]) {
        self.format = format
        self.version = version
        self.model = model
        self.data = data
        self.layers = layers
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
