import Foundation
import MoEFormat

/// Weights read from a `.mpk` bundle in their stored formats. Uncompressed payloads are used
/// in place in the memory map; zstd payloads are decompressed once into owned memory.
/// Each payload's checksum is verified when the model first asks for it (at model load).
public struct BundleWeights: WeightSource {
    public let bundle: BundleFile
    public let verifyPayloads: Bool
    private let loaded = LoadedPayloads()
    public var config: ModelConfig { bundle.config }

    public init(bundle: BundleFile, verifyPayloads: Bool = true) throws {
        self.bundle = bundle
        self.verifyPayloads = verifyPayloads
        let c = bundle.config
        // Check the tensor set against the architecture, with the pruned expert counts.
        try bundle.checkPlausibleConfig()
        for layer in 0..<c.numHiddenLayers where c.isMoELayer(layer) {
            let kept = bundle.keptExperts(layer: layer) ?? Array(0..<c.moeNumExperts)
            guard kept.count >= c.moeK, Set(kept).count == kept.count, kept.allSatisfy({ $0 >= 0 && $0 < c.moeNumExperts }) else {
                throw FormatError("\(bundle.name): pruning map of layer \(layer) is invalid for \(c.moeNumExperts) experts and top-\(c.moeK)")
            }
        }
        let layout = ModelLayout(config: c) { bundle.keptExperts(layer: $0) ?? Array(0..<c.moeNumExperts) }
        let expected = Set(layout.tensors.map(\.name))
        // Carried multi-token-prediction tensors are extra by design.
        let present = Set(bundle.manifest.tensors.map(\.name).filter { !c.architecture.family.isCarried($0) })
        if let missing = layout.tensors.filter({ !$0.optional && !present.contains($0.name) }).map(\.name).sorted().first {
            throw FormatError("\(bundle.name): tensor \(missing) is missing from the bundle")
        }
        if let extra = present.subtracting(expected).sorted().first {
            throw FormatError("\(bundle.name): unexpected tensor \(extra) in the bundle")
        }
    }

    public init(path: String, verifyPayloads: Bool = true) throws {
        try self.init(bundle: BundleFile(path: path), verifyPayloads: verifyPayloads)
    }

    /// Verifies and decompresses every zstd tensor payload now, the tensors spread over the
    /// kernel pool's threads, instead of one after another as the model asks for them. They are
    /// decompressed side by side into one `PayloadArena` (which Linux can back with huge pages),
    /// and the model then takes the prepared bytes. (Uncompressed payloads stay in the memory
    /// map, checked as the model asks for them: checking them on several threads measured
    /// slower, the page faults of the map being the cost.)
    public func preload() throws {
        let tensors = bundle.manifest.tensors.filter { $0.payload.compression == .zstd }
        guard !tensors.isEmpty else { return }
        let (offsets, capacity) = PayloadArena.layout(tensors.map(\.payload.rawLength))
        let arena = try PayloadArena(capacity: capacity)
        let lock = NSLock()
        var results: [String: PayloadBytes] = [:]
        var failure: Error?
        KernelPool.parallelFor(tensors.count) { i in
            let t = tensors[i]
            do {
                let bytes = try bundle.payload(t.payload, what: "tensor \(t.name)", verify: verifyPayloads,
                                               into: arena, at: offsets[i])
                lock.withLock { results[t.name] = bytes }
            } catch {
                lock.withLock { failure = failure ?? error }
            }
        }
        if let failure { throw failure }
        loaded.set(results)
    }

    private func payload(_ t: BundleTensor) throws -> PayloadBytes {
        if let ready = loaded.take(t.name) { return ready }
        return try bundle.payload(t.payload, what: "tensor \(t.name)", verify: verifyPayloads)
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
        let bytes = try payload(t)
        return try StoredMatrix(format: t.format, rows: rows, cols: cols, bytes: bytes)
    }

    public func vector(_ name: String, count: Int) throws -> [Float] {
        let t = try entry(name)
        guard t.format == .f32, t.elementCount == count else {
            throw FormatError("\(bundle.name): tensor \(name) is \(t.shape) \(t.format.rawValue), expected \(count) f32 values")
        }
        let bytes = try payload(t)
        return (0..<count).map { Float(bitPattern: UInt32(littleEndian: bytes.buffer.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
    }

    public func contains(_ name: String) -> Bool { bundle.tensor(name) != nil }

    public func keptExperts(layer: Int) -> [Int] {
        bundle.keptExperts(layer: layer) ?? Array(0..<config.moeNumExperts)
    }
}

/// Payloads `BundleWeights.preload` prepared, each handed out once.
private final class LoadedPayloads: @unchecked Sendable {
    private let lock = NSLock()
    private var bytes: [String: PayloadBytes] = [:]

    func set(_ ready: [String: PayloadBytes]) { lock.withLock { bytes = ready } }
    func take(_ name: String) -> PayloadBytes? { lock.withLock { bytes.removeValue(forKey: name) } }
}
