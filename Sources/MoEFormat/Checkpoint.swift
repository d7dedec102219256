import Foundation

/// A Hugging Face checkpoint directory: config.json plus one safetensors file or a sharded set
/// listed in `model.safetensors.index.json`. Shards are memory-mapped; tensors are read one at
/// a time on request.
public final class Checkpoint: Sendable {
    public let directory: URL
    public let config: ModelConfig
    /// Raw config.json bytes, kept so a bundle can carry them unchanged.
    public let configData: Data
    public let shards: [SafeTensorsFile]
    private let location: [String: Int]

    public init(directory: URL) throws {
        self.directory = directory
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw FormatError("\(directory.path) is not a checkpoint directory")
        }
        let configURL = directory.appendingPathComponent("config.json")
        guard let configData = FileManager.default.contents(atPath: configURL.path) else {
            throw FormatError("\(directory.path) has no config.json")
        }
        self.configData = configData
        self.config = try ModelConfig(jsonData: configData)

        let shardNames = try Self.shardNames(in: directory)
        var shards: [SafeTensorsFile] = []
        var location: [String: Int] = [:]
        for (index, name) in shardNames.enumerated() {
            let path = directory.appendingPathComponent(name).path
            guard FileManager.default.fileExists(atPath: path) else {
                throw FormatError("shard \(name) listed in model.safetensors.index.json is missing")
            }
            let shard = try SafeTensorsFile(path: path)
            for tensorName in shard.tensors.keys {
                if let other = location[tensorName] {
                    throw FormatError("tensor \(tensorName) appears in both \(shardNames[other]) and \(name)")
                }
                location[tensorName] = index
            }
            shards.append(shard)
        }
        if let weightMap = try Self.indexWeightMap(in: directory) {
            for (tensorName, file) in weightMap.sorted(by: { $0.key < $1.key }) {
                guard let index = location[tensorName] else {
                    throw FormatError("tensor \(tensorName) listed in the index is not in \(file)")
                }
                guard shardNames[index] == file else {
                    throw FormatError("tensor \(tensorName) is in \(shardNames[index]), but the index says \(file)")
                }
            }
        }
        let family = config.architecture.family
        try ModelLayout.checkPlausible(config, holding: location.keys.count(where: { !family.isCarried($0) }),
                                       in: directory.lastPathComponent)
        self.shards = shards
        self.location = location
    }

    /// Every tensor name, sorted.
    public var tensorNames: [String] { location.keys.sorted() }

    public func info(_ name: String) throws -> TensorInfo {
        guard let index = location[name], let info = shards[index].tensors[name] else {
            throw FormatError("tensor \(name) is not in the checkpoint")
        }
        return info
    }

    public func contains(_ name: String) -> Bool { location[name] != nil }

    /// The tensor upcast to f32, checked against the expected shape.
    public func floats(_ name: String, shape expected: [Int]? = nil) throws -> [Float] {
        let info = try info(name)
        if let expected, expected != info.shape {
            throw FormatError("tensor \(name) has shape \(info.shape), expected \(expected)")
        }
        return shards[location[name]!].floats(info)
    }

    /// Raw bytes of a tensor (valid while the checkpoint is alive).
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let info = try info(name)
        return shards[location[name]!].rawBytes(info)
    }

    /// Total bytes of the safetensors files.
    public var sizeOnDisk: Int { shards.reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: $1.path)[.size] as? Int) ?? 0) } }

    private static func indexWeightMap(in directory: URL) throws -> [String: String]? {
        let indexURL = directory.appendingPathComponent("model.safetensors.index.json")
        guard let data = FileManager.default.contents(atPath: indexURL.path) else { return nil }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let map = object["weight_map"] as? [String: Any] else {
            throw FormatError("model.safetensors.index.json has no weight_map object")
        }
        var result: [String: String] = [:]
        for (tensor, file) in map {
            guard let file = file as? String, !file.contains("/"), !file.hasPrefix(".") else {
                throw FormatError("model.safetensors.index.json names an invalid file for \(tensor)")
            }
            result[tensor] = file
        }
        return result
    }

    private static func shardNames(in directory: URL) throws -> [String] {
        if let map = try indexWeightMap(in: directory) {
            let names = Set(map.values).sorted()
            guard !names.isEmpty else { throw FormatError("model.safetensors.index.json lists no shards") }
            return names
        }
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("model.safetensors").path) {
            return ["model.safetensors"]
        }
        let all = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let names = all.filter { $0.hasSuffix(".safetensors") }.sorted()
        if names.isEmpty, all.contains(where: { $0.hasSuffix(".pdparams") }) {
            throw FormatError("\(directory.path) holds PaddlePaddle weights (.pdparams): use the model's PyTorch release, "
                              + "the hub repository whose name ends in -PT (for example baidu/ERNIE-4.5-21B-A3B-PT)")
        }
        guard !names.isEmpty else { throw FormatError("\(directory.path) has no .safetensors files") }
        return names
    }
}
