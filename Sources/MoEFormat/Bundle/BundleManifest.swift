import Foundation

/// Payload compression of one section.
public enum PayloadCompression: String, Sendable, Codable {
    case none
    case zstd
}

/// Where one payload section lives and how to check it.
public struct PayloadLocation: Sendable, Codable, Equatable {
    /// Absolute byte offset in the file (a multiple of the bundle's alignment).
    public var offset: Int
    /// Stored bytes (compressed size for zstd).
    public var length: Int
    /// Bytes after decompression (equal to `length` when uncompressed).
    public var rawLength: Int
    public var compression: PayloadCompression
    /// CRC-32C of the stored bytes.
    public var crc32c: UInt32

    public init(offset: Int, length: Int, rawLength: Int, compression: PayloadCompression, crc32c: UInt32) {
        self.offset = offset
        self.length = length
        self.rawLength = rawLength
        self.compression = compression
        self.crc32c = crc32c
    }

    enum CodingKeys: String, CodingKey {
        case offset, length, compression, crc32c
        case rawLength = "raw_length"
    }
}

/// One stored tensor: 2-D weights in a `WeightFormat` ([rows, cols], row-major), 1-D tensors
/// always f32.
public struct BundleTensor: Sendable, Codable, Equatable {
    public var name: String
    public var tensorClass: TensorClass
    public var format: WeightFormat
    public var shape: [Int]
    public var layer: Int?
    public var expert: Int?
    public var payload: PayloadLocation

    public var elementCount: Int { shape.reduce(1, *) }

    public init(name: String, tensorClass: TensorClass, format: WeightFormat, shape: [Int], layer: Int?, expert: Int?,
                payload: PayloadLocation) {
        self.name = name
        self.tensorClass = tensorClass
        self.format = format
        self.shape = shape
        self.layer = layer
        self.expert = expert
        self.payload = payload
    }

    enum CodingKeys: String, CodingKey {
        case name, format, shape, layer, expert, payload
        case tensorClass = "class"
    }
}

/// A file carried verbatim (tokenizer files).
public struct BundleFileEntry: Sendable, Codable, Equatable {
    public var name: String
    public var payload: PayloadLocation

    public init(name: String, payload: PayloadLocation) {
        self.name = name
        self.payload = payload
    }
}

/// The profile a bundle was made with: its name and full TOML text.
public struct ProfileRecord: Sendable, Codable, Equatable {
    public var name: String
    public var toml: String

    public init(name: String, toml: String) {
        self.name = name
        self.toml = toml
    }
}

public struct SourceFileRecord: Sendable, Codable, Equatable {
    public var name: String
    public var bytes: Int
    public var sha256: String

    public init(name: String, bytes: Int, sha256: String) {
        self.name = name
        self.bytes = bytes
        self.sha256 = sha256
    }
}

/// Where a bundle came from: source files, the tool, and the options that shaped it.
public struct Provenance: Sendable, Codable, Equatable {
    public var tool: String
    public var toolVersion: String
    public var sourceFiles: [SourceFileRecord]
    /// Creation parameters as strings (profile name, prune ratio, calibration file hash, ...).
    public var parameters: [String: String]

    public init(tool: String = "moepack", toolVersion: String = BundleFormat.toolVersion,
                sourceFiles: [SourceFileRecord], parameters: [String: String]) {
        self.tool = tool
        self.toolVersion = toolVersion
        self.sourceFiles = sourceFiles
        self.parameters = parameters
    }

    enum CodingKeys: String, CodingKey {
        case tool, parameters
        case toolVersion = "tool_version"
        case sourceFiles = "source_files"
    }
}

/// The bundle's table of contents, stored as JSON with sorted keys.
public struct BundleManifest: Sendable, Codable, Equatable {
    public var formatVersion: Int
    public var alignment: Int
    /// config.json of the source checkpoint, byte for byte.
    public var configJSON: String
    public var tensors: [BundleTensor]
    public var files: [BundleFileEntry]
    public var profile: ProfileRecord
    /// MoE layer index (as a string key) → original ids of the kept experts, in storage order.
    /// Absent when nothing was pruned.
    public var pruning: [String: [Int]]?
    public var provenance: Provenance

    public init(alignment: Int, configJSON: String, tensors: [BundleTensor], files: [BundleFileEntry],
                profile: ProfileRecord, pruning: [String: [Int]]?, provenance: Provenance) {
        self.formatVersion = BundleFormat.version
        self.alignment = alignment
        self.configJSON = configJSON
        self.tensors = tensors
        self.files = files
        self.profile = profile
        self.pruning = pruning
        self.provenance = provenance
    }

    enum CodingKeys: String, CodingKey {
        case alignment, tensors, files, profile, pruning, provenance
        case formatVersion = "format_version"
        case configJSON = "config_json"
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(self)
    }

    public static func decode(_ data: Data) throws -> BundleManifest {
        let decoder = JSONDecoder()
        do {
            return try decoder.decode(BundleManifest.self, from: data)
        } catch let error as DecodingError {
            throw FormatError("bundle manifest is malformed: \(Self.describe(error))")
        } catch {
            throw FormatError("bundle manifest is not valid JSON")
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context): return "missing \(path(context)).\(key.stringValue)"
        case .typeMismatch(_, let context), .valueNotFound(_, let context): return "bad value at \(path(context))"
        case .dataCorrupted(let context): return "bad value at \(path(context)): \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}
