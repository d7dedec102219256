import CZstd
import Foundation

/// An opened bundle: the file is memory-mapped, the header and manifest are checked (checksums
/// and every offset, length and shape) before anything else is read. Payload checksums are
/// checked by `payload(_:)` when a payload is used, or all at once by `verifyPayloads()`.
public final class BundleFile: Sendable {
    public let path: String
    public let header: BundleHeader
    public let manifest: BundleManifest
    public let config: ModelConfig
    private let file: MappedFile
    private let tensorIndex: [String: Int]

    public var name: String { (path as NSString).lastPathComponent }
    public var fileSize: Int { file.count }

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    /// Opens a bundle already mapped (or copied into memory, see `MappedFile(copying:path:)`).
    public init(file: MappedFile) throws {
        path = file.path
        self.file = file
        let name = (path as NSString).lastPathComponent
        header = try BundleHeader.decode(file.bytes, fileSize: file.count, name: name)
        let manifestBytes = UnsafeRawBufferPointer(rebasing: file.bytes[header.manifestOffset..<(header.manifestOffset + header.manifestLength)])
        let crc = CRC32C.checksum(manifestBytes)
        guard crc == header.manifestCRC else {
            throw FormatError("\(name): manifest checksum mismatch (stored \(hex(header.manifestCRC)), computed \(hex(crc))): the manifest is corrupted")
        }
        manifest = try BundleManifest.decode(Data(manifestBytes))
        guard manifest.formatVersion == header.version else {
            throw FormatError("\(name): manifest version \(manifest.formatVersion) does not match the header (\(header.version))")
        }
        config = try ModelConfig(jsonData: Data(manifest.configJSON.utf8))
        var index: [String: Int] = [:]
        for (i, tensor) in manifest.tensors.enumerated() {
            guard index[tensor.name] == nil else { throw FormatError("\(name): tensor \(tensor.name) appears twice in the manifest") }
            index[tensor.name] = i
        }
        tensorIndex = index
        try BundleValidation.check(manifest, header: header, name: name)

    }

    /// Fails when the embedded config describes more tensors than the manifest lists (counting
    /// the kept experts of pruned layers), before anything is built from the config's sizes.
    public func checkPlausibleConfig() throws {
        let pruning = manifest.pruning, experts = config.moeNumExperts
        try ModelLayout.checkPlausible(config, holding: manifest.tensors.count, in: name) { layer in
            pruning?[String(layer)]?.count ?? experts
        }
    }

    public func tensor(_ name: String) -> BundleTensor? { tensorIndex[name].map { manifest.tensors[$0] } }

    /// Original ids of the experts kept in `layer`, or nil when the layer was not pruned.
    public func keptExperts(layer: Int) -> [Int]? { manifest.pruning?[String(layer)] }

    /// The stored bytes of a section (compressed for zstd payloads), valid while this object lives.
    public func storedBytes(_ location: PayloadLocation) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[location.offset..<(location.offset + location.length)])
    }

    /// Checks a section's CRC-32C.
    public func verify(_ location: PayloadLocation, what: String) throws {
        let crc = CRC32C.checksum(storedBytes(location))
        guard crc == location.crc32c else {
            throw FormatError("\(name): checksum mismatch in \(what) (stored \(hex(location.crc32c)), computed \(hex(crc))): the payload is corrupted")
        }
    }

    /// A section's bytes after decompression: borrowed from the map for uncompressed sections,
    /// decompressed into owned memory for zstd. Verifies the checksum first when `verify`.
    public func payload(_ location: PayloadLocation, what: String, verify: Bool = true) throws -> PayloadBytes {
        if verify { try self.verify(location, what: what) }
        let stored = storedBytes(location)
        switch location.compression {
        case .none:
            return PayloadBytes(borrowing: stored, owner: self)
        case .zstd:
            let owned = PayloadBytes(allocating: location.rawLength)
            try decompress(location, into: UnsafeMutableRawBufferPointer(start: owned.mutableBase, count: location.rawLength),
                           what: what)
            return owned
        }
    }

    /// A zstd payload decompressed into `arena` at `offset` (laid out by `PayloadArena.layout`),
    /// checksum verified first when `verify`. The bytes live as long as the arena.
    public func payload(_ location: PayloadLocation, what: String, verify: Bool = true,
                        into arena: PayloadArena, at offset: Int) throws -> PayloadBytes {
        guard location.compression == .zstd else { return try payload(location, what: what, verify: verify) }
        if verify { try self.verify(location, what: what) }
        let region = arena.region(offset: offset, count: location.rawLength)
        try decompress(location, into: region, what: what)
        // The compressed bytes are not read again: their file pages need not stay resident
        // next to the decompressed copy (a bundle would otherwise cost its size twice).
        file.releasePages(offset: location.offset, count: location.length)
        return PayloadBytes(borrowing: UnsafeRawBufferPointer(region), owner: arena)
    }

    /// Decompresses a zstd payload (checksum not checked) into `destination`, which must hold
    /// exactly its `rawLength` bytes.
    public func decompress(_ location: PayloadLocation, into destination: UnsafeMutableRawBufferPointer,
                           what: String) throws {
        guard location.compression == .zstd, destination.count == location.rawLength else {
            throw FormatError("\(name): \(what) is not a zstd payload of \(destination.count) bytes")
        }
        let stored = storedBytes(location)
        let context = DecompressionContexts.shared.take()
        defer { DecompressionContexts.shared.give(context) }
        let written = ZSTD_decompressDCtx(context, destination.baseAddress, location.rawLength, stored.baseAddress, stored.count)
        if ZSTD_isError(written) != 0 {
            throw FormatError("\(name): cannot decompress \(what): \(String(cString: ZSTD_getErrorName(written)))")
        }
        guard written == location.rawLength else {
            throw FormatError("\(name): \(what) decompressed to \(written) bytes, the manifest says \(location.rawLength)")
        }
    }

    /// A carried file (e.g. tokenizer.model), checksum verified.
    public func fileData(named fileName: String) throws -> Data? {
        guard let entry = manifest.files.first(where: { $0.name == fileName }) else { return nil }
        let bytes = try payload(entry.payload, what: "file \(fileName)")
        return Data(bytes.buffer)
    }

    /// Checks every payload checksum and that zstd payloads decompress to their declared size.
    /// Returns the number of sections checked.
    @discardableResult
    public func verifyPayloads() throws -> Int {
        var count = 0
        for tensor in manifest.tensors {
            _ = try payload(tensor.payload, what: "tensor \(tensor.name)")
            count += 1
        }
        for entry in manifest.files {
            _ = try payload(entry.payload, what: "file \(entry.name)")
            count += 1
        }
        return count
    }
}

/// Payload bytes borrowed from a mapped bundle or a `PayloadArena` (kept alive by `owner`), or owned.
public final class PayloadBytes: @unchecked Sendable {
    public let buffer: UnsafeRawBufferPointer
    private let owner: AnyObject?
    private let allocation: UnsafeMutableRawPointer?

    init(borrowing buffer: UnsafeRawBufferPointer, owner: AnyObject) {
        self.buffer = buffer
        self.owner = owner
        allocation = nil
    }

    init(allocating count: Int) {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
        allocation = p
        buffer = UnsafeRawBufferPointer(start: p, count: count)
        owner = nil
    }

    var mutableBase: UnsafeMutableRawPointer? { allocation }

    /// True when the bytes live in the page cache (mapped), false when decompressed into memory.
    public var isMapped: Bool { allocation == nil && !(owner is PayloadArena) }

    deinit { allocation?.deallocate() }
}

/// zstd decompression contexts kept for reuse (one per concurrent caller), so loading a bundle
/// of a thousand payloads does not set up a context per payload.
final class DecompressionContexts: @unchecked Sendable {
    static let shared = DecompressionContexts()
    private let lock = NSLock()
    private var idle: [OpaquePointer] = []

    func take() -> OpaquePointer? {
        lock.withLock { idle.popLast() } ?? ZSTD_createDCtx()
    }

    func give(_ context: OpaquePointer?) {
        guard let context else { return }
        lock.withLock { idle.append(context) }
    }
}
