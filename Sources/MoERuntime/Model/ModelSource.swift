import Foundation
import MoEFormat
import MoETokenizer

/// A MODEL argument opened once: a checkpoint directory or a `.mpk` bundle, with its config
/// (and so its family) and everything that travels with it. Commands open a source and ask it
/// for the weights, the tokenizer and companion files, instead of re-opening the path for each.
public final class ModelSource: @unchecked Sendable {
    public enum Storage {
        case checkpoint(Checkpoint)
        case bundle(BundleFile)
    }

    public let path: String
    public let storage: Storage

    public init(path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw FormatError("\(path) does not exist")
        }
        self.path = path
        storage = isDirectory.boolValue
            ? .checkpoint(try Checkpoint(directory: URL(fileURLWithPath: path)))
            : .bundle(try BundleFile(path: path))
    }

    public var config: ModelConfig {
        switch storage {
        case .checkpoint(let c): c.config
        case .bundle(let b): b.config
        }
    }

    public var isBundle: Bool { if case .bundle = storage { true } else { false } }

    /// The weights in their stored formats (a checkpoint's layout is validated here).
    public func weights() throws -> any WeightSource {
        switch storage {
        case .checkpoint(let c): try CheckpointWeights(checkpoint: c)
        case .bundle(let b): try BundleWeights(bundle: b)
        }
    }

    /// The model; a bundle's payloads are verified and decompressed on all of the kernel
    /// pool's threads first. `cachePrecision` overrides the model's own choice.
    public func model(cachePrecision: KVCache.Precision? = nil) throws -> ErnieModel {
        let source = try weights()
        if let bundle = source as? BundleWeights { try bundle.preload() }
        return try ErnieModel(weights: source, cachePrecision: cachePrecision)
    }

    /// The tokenizer next to a checkpoint's weights, or the one a bundle carries.
    public func tokenizer() throws -> Tokenizer {
        switch storage {
        case .checkpoint(let c): return try Tokenizer(directory: c.directory)
        case .bundle(let bundle):
            var files: [String: Data] = [:]
            for name in Tokenizer.modelFileNames + Tokenizer.configFileNames {
                if let data = try bundle.fileData(named: name) { files[name] = data }
            }
            guard files["tokenizer.model"] != nil || files["tokenizer.json"] != nil else {
                throw FormatError("\(bundle.name) carries no tokenizer.model or tokenizer.json")
            }
            return try Tokenizer(files: files)
        }
    }

    /// A file that travels with the model (generation_config.json, ...): next to the weights of
    /// a checkpoint, or carried inside a bundle. nil when absent.
    public func companionFile(named name: String) throws -> Data? {
        switch storage {
        case .checkpoint(let c): FileManager.default.contents(atPath: c.directory.appendingPathComponent(name).path)
        case .bundle(let b): try b.fileData(named: name)
        }
    }
}

/// Opens MODEL arguments (each call opens the path anew; open a `ModelSource` to ask several things).
public enum ModelLoader {
    public static func weights(at path: String) throws -> any WeightSource { try ModelSource(path: path).weights() }

    /// The tokenizer of a directory (a checkpoint's, or tokenizer files alone), or the one a
    /// bundle carries.
    public static func tokenizer(at path: String) throws -> Tokenizer {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            return try Tokenizer(directory: URL(fileURLWithPath: path))
        }
        return try ModelSource(path: path).tokenizer()
    }

    /// A file that travels with the model; nil when absent.
    public static func companionFile(named name: String, at path: String) throws -> Data? {
        try ModelSource(path: path).companionFile(named: name)
    }

    /// The model at `path` (see `ModelSource.model`).
    public static func model(at path: String, cachePrecision: KVCache.Precision? = nil) throws -> ErnieModel {
        try ModelSource(path: path).model(cachePrecision: cachePrecision)
    }
}
