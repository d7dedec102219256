import Foundation
import MoEFormat

enum FormatTargets {
    static func safetensors(_ data: Data) throws {
        let file = try SafeTensorsFile(file: MappedFile(copying: data, path: "fuzz.safetensors"))
        for info in file.tensors.values {
            expect(info.byteRange.lowerBound >= 8 && info.byteRange.upperBound <= data.count,
                   "tensor \(info.name) range \(info.byteRange) outside \(data.count) bytes")
            // Reads every byte of the tensor, so a wrong range shows up under the address sanitizer.
            let values = file.floats(info)
            expect(values.count == info.elementCount, "tensor \(info.name) read \(values.count) values")
        }
    }

    /// What `inspect`, `convert` and the loaders do with a config before looking at any tensor.
    static func config(_ data: Data) throws {
        let config = try ModelConfig(jsonData: data)
        let layout = ModelLayout(config: config)
        _ = layout.parameterCounts
        _ = config.moeLayers
    }
}
