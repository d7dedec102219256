import Foundation
import MoEFormat

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

    public static func model(at path: String) throws -> ErnieModel {
        try ErnieModel(weights: weights(at: path))
    }
}
