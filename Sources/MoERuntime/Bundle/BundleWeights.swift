import Foundation
import MoEFormat

/// Weights read from a `.mpk` bundle in their stored formats. Uncompressed payloads are used
/// in place in the memory map; zstd payloads are decompressed once into owned memory.
/// Each payload's checksum is verified when the model first asks for it (at model load).
public struct BundleWeights: WeightSource {
    public let bundle: BundleFile
    public let verifyPayloads: Bool
    public var config: ModelConfig { bundle.config }

    public init(bundle: BundleFile, verifyPayloads: Bool = true) throws {
        self.bundle = bundle
        self.verifyPayloads = verifyPayloads
        let c = bundle.config
        // Check the tensor set against the architecture, with the pruned expert counts.
        var expected = Set<String>()
        for spec in ModelLayout(config: c).tensors {
            if let layer = spec.layer, let expert = spec.expert, !keptExperts(layer: layer).contains(expert) { continue }
            expected.insert(spec.name)
        }
        let present = Set(bundle.manifest.tensors.map(\.name))
        if let missing = expected.subtracting(present).sorted().first {
            throw FormatError("\(bundle.name): tensor \(missing) is missing from the bundle")
        }
        if let extra = present.subtracting(expected).sorted().first {
            throw FormatError("\(bundle.name): unexpected tensor \(extra) in the bundle")
        }
        for layer in 0..<c.numHiddenLayers where c.isMoELayer(layer) {
            let kept = keptExperts(layer: layer)
            guard kept.count >= c.moeK, kept.allSatisfy({ $0 < c.moeNumExperts }) else {
                throw FormatError("\(bundle.name): pruning map of layer \(layer) is invalid for \(c.moeNumExperts) experts and top-\(c.moeK)")
            }
        }
    }

    public init(path: String, verifyPayloads: Bool = true) throws {
        try self.init(bundle: BundleFile(path: path), verifyPayloads: verifyPayloads)
    }

    private func entry(_ name: String) throws -> BundleTensor {
        guard let t = bundle.tensor(name) else { throw FormatError("\(bundle.name): tensor \(name) is not in the bundle") }
        return t
    }

    public func matrix(_ name: String, rows: Int, cols: Int) throws -> any MatrixOperator {
        let t = try entry(name)
        guard t.shape == [rows, cols] else {
            throw FormatError("\(bundle.name): tensor \(name) has shape \(t.shape), expected [\(rows), \(cols)]")
        }
        let bytes = try bundle.payload(t.payload, what: "tensor \(name)", verify: verifyPayloads)
        return try StoredMatrix(format: t.format, rows: rows, cols: cols, bytes: bytes)
    }

    public func vector(_ name: String, count: Int) throws -> [Float] {
        let t = try entry(name)
        guard t.format == .f32, t.elementCount == count else {
            throw FormatError("\(bundle.name): tensor \(name) is \(t.shape) \(t.format.rawValue), expected \(count) f32 values")
        }
        let bytes = try bundle.payload(t.payload, what: "tensor \(name)", verify: verifyPayloads)
        return (0..<count).map { Float(bitPattern: UInt32(littleEndian: bytes.buffer.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
    }

    public func keptExperts(layer: Int) -> [Int] {
        bundle.keptExperts(layer: layer) ?? Array(0..<config.moeNumExperts)
    }
}
