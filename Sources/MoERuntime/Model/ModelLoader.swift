import Foundation
import MoEFormat
import MoETokenizer

/// Opens MODEL arguments: a checkpoint directory or a `.mpk` bundle file.
public enum ModelLoader {
    public static func weights(at path: String) throws -> any WeightSource {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw FormatError("\(path) does not exist")
        }
        if isDirectory.boolValue {
            return try CheckpointWeights(checkpoint: Checkpoint(directory: URL(fileURLWithPath: path)))
        }
        return try BundleWeights(path: path)
    }

    /// The tokenizer of a checkpoint directory, or the one a bundle carries.
    public static func tokenizer(at path: String) throws -> Tokenizer {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw FormatError("\(path) does not exist")
        }
        if isDirectory.boolValue { return try Tokenizer(directory: URL(fileURLWithPath: path)) }
        let bundle = try BundleFile(path: path)
        var files: [String: Data] = [:]
        for name in Tokenizer.modelFileNames + Tokenizer.configFileNames {
            if let data = try bundle.fileData(named: name) { files[name] = data }
        }
        guard files["tokenizer.model"] != nil || files["tokenizer.json"] != nil else {
            throw FormatError("\(bundle.name) carries no tokenizer.model or tokenizer.json")
        }
        return try Tokenizer(files: files)
    }

    /// A file that travels with the model (generation_config.json, ...): next to the weights of a
    /// checkpoint, or carried inside a bundle. nil when absent.
    public static func companionFile(named name: String, at path: String) throws -> Data? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw FormatError("\(path) does not exist")
        }
        if isDirectory.boolValue {
            return FileManager.default.contents(atPath: URL(fileURLWithPath: path).appendingPathComponent(name).path)
        }
        return try BundleFile(path: path).fileData(named: name)
    }

    /// The model at `path`; a bundle's payloads are verified and decompressed on all of the
    /// kernel pool's threads first. `cachePrecision` overrides the model's own choice.
    public static func model(at path: String, cachePrecision: KVCache.Precision? = nil) throws -> ErnieModel {
        let source = try weights(at: path)
        if let bundle = source as? BundleWeights { try bundle.preload() }
        return try ErnieModel(weights: source, cachePrecision: cachePrecision)
    }
}
