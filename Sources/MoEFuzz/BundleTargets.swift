import Foundation
import MoEFormat

enum BundleTargets {
    /// The input as given (almost always stopped by a checksum), then with its file length and
    /// checksums made consistent so mutations reach the manifest and the payloads.
    static func bundle(_ data: Data) throws {
        _ = try? open(data)
        try open(withFixedChecksums(data))
    }

    /// Payload area of the bundle the manifest is placed in: zeros, large enough for the
    /// offsets in the seed manifests (Tests/Fuzz/corpus/manifest). Zeros do not decompress,
    /// so this target stops after the checks on open; `bundle` reads real payloads.
    static let payloadArea = 128 * 1024

    static func manifest(_ data: Data) throws {
        let offset = BundleFormat.headerSize + payloadArea
        let crc = data.withUnsafeBytes { CRC32C.checksum($0) }
        let header = BundleHeader(manifestOffset: offset, manifestLength: data.count,
                                  fileLength: offset + data.count, manifestCRC: crc)
        var bytes = Data(header.encoded())
        bytes.append(Data(count: payloadArea))
        bytes.append(data)
        try open(bytes, readPayloads: false)
    }

    static func open(_ data: Data, readPayloads: Bool = true) throws {
        let bundle = try BundleFile(file: MappedFile(copying: data, path: "fuzz.mpk"))
        _ = BundleSummary(bundle: bundle)
        for layer in 0..<min(bundle.config.numHiddenLayers, 64) { _ = bundle.keptExperts(layer: layer) }
        guard readPayloads else { return }
        var sum: UInt8 = 0
        for tensor in bundle.manifest.tensors {
            let bytes = try bundle.payload(tensor.payload, what: "tensor \(tensor.name)", verify: false)
            expect(bytes.buffer.count == tensor.payload.rawLength, "tensor \(tensor.name) payload size")
            sum &+= bytes.buffer.reduce(0, &+)
        }
        for file in bundle.manifest.files {
            let bytes = try bundle.payload(file.payload, what: "file \(file.name)", verify: false)
            sum &+= bytes.buffer.reduce(0, &+)
        }
        _ = try bundle.verifyPayloads()
        blackHole(sum)
    }

    /// Sets the header's file length to the input's, the manifest checksum when the manifest
    /// range lies in the input, and the header checksum.
    static func withFixedChecksums(_ data: Data) -> Data {
        guard data.count >= BundleFormat.headerSize else { return data }
        var bytes = [UInt8](data)
        func u64(_ at: Int) -> UInt64 { bytes[at..<(at + 8)].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        func put<T: FixedWidthInteger>(_ value: T, at: Int) {
            withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange(at..<(at + $0.count), with: $0) }
        }
        put(UInt64(bytes.count), at: 32)
        let offset = u64(16), length = u64(24)
        if offset <= UInt64(bytes.count), length <= UInt64(bytes.count) - offset {
            put(CRC32C.checksum(bytes[Int(offset)..<Int(offset + length)]), at: 40)
        }
        put(CRC32C.checksum(bytes[0..<60]), at: 60)
        return Data(bytes)
    }
}

/// Keeps a computed value alive so the optimizer cannot drop the reads that made it.
@inline(never)
func blackHole<T>(_ value: T) {}
