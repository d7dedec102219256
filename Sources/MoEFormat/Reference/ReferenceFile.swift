#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CZstd
import Foundation

/// What a reference file (`moepack eval --save-reference`) records about how it was made:
/// the model, the text, the windowing and the encoding of its per-position records.
///
/// File layout (little-endian): the 8-byte magic `MPKREF01`; the header's JSON length (u32)
/// and CRC-32C (u32); the header JSON; then one block per window, in window order:
/// positions (u32), CRC-32C of the stored bytes (u32), stored length (u64), and the stored
/// bytes, a zstd frame of `positions × recordBytes` bytes. Nothing follows the last block.
public struct ReferenceHeader: Codable, Sendable, Equatable {
    public static let formatName = "moepack-reference"
    public static let currentVersion = 1

    public struct Model: Codable, Sendable, Equatable {
        /// `ModelFingerprint` of the model that was scored, and its scheme.
        public var fingerprint: String
        public var fingerprintScheme: String
        public var architecture: String
        public var vocabSize: Int
        /// The path the model was opened from (informational).
        public var source: String

        public init(fingerprint: String, fingerprintScheme: String, architecture: String, vocabSize: Int, source: String) {
            self.fingerprint = fingerprint
            self.fingerprintScheme = fingerprintScheme
            self.architecture = architecture
            self.vocabSize = vocabSize
            self.source = source
        }
    }

    public struct Text: Codable, Sendable, Equatable {
        /// The text file's name (informational), and SHA-256 of its bytes and of its token ids.
        public var source: String
        public var textSHA256: String
        public var tokensSHA256: String
        public var tokens: Int
        /// Window length and the number of windows (`Evaluator`'s windowing).
        public var context: Int
        public var windows: Int
        public var predictions: Int

        public init(source: String, textSHA256: String, tokensSHA256: String, tokens: Int, context: Int,
                    windows: Int, predictions: Int) {
            self.source = source
            self.textSHA256 = textSHA256
            self.tokensSHA256 = tokensSHA256
            self.tokens = tokens
            self.context = context
            self.windows = windows
            self.predictions = predictions
        }
    }

    public var format: String
    public var version: Int
    /// Name of the per-position record encoding and its parameters.
    public var encoding: String
    public var logProbStep: Double
    public var logProbRange: Double
    public var model: Model
    public var data: Text

    public init(encoding: String, logProbStep: Double, logProbRange: Double, model: Model, data: Text) {
        format = Self.formatName
        version = Self.currentVersion
        self.encoding = encoding
        self.logProbStep = logProbStep
        self.logProbRange = logProbRange
        self.model = model
        self.data = data
    }

    /// Bytes of one position's record: target log-probability (f32), argmax (u32), Σ p·log p
    /// (f64), then one u16 code per vocabulary entry.
    public var recordBytes: Int { Self.recordBytes(vocabSize: model.vocabSize) }

    public static func recordBytes(vocabSize: Int) -> Int { 16 + 2 * vocabSize }
}

enum ReferenceFileFormat {
    static let magic: [UInt8] = Array("MPKREF01".utf8)
    static let maxHeaderBytes = 1 << 20
    static let blockHeaderBytes = 16
}

/// Writes a reference file atomically: blocks go to a temporary file next to the output, which
/// is synced and renamed onto the output path by `finish`; an unfinished writer leaves nothing.
public final class ReferenceFileWriter {
    public let header: ReferenceHeader
    private let outputPath: String
    private let out: FileOutput
    private var compressed: [UInt8] = []
    private var windowsWritten = 0
    private var finished = false
    private let zstdLevel: Int32

    public init(path: String, header: ReferenceHeader, zstdLevel: Int = 1) throws {
        self.header = header
        self.zstdLevel = Int32(zstdLevel)
        outputPath = path
        out = try FileOutput.partial(for: path)
        do {
            let json = [UInt8](try JSONEncoder.sortedKeys.encode(header))
            try out.append(ReferenceFileFormat.magic)
            try out.append(littleEndian: UInt32(json.count))
            try out.append(littleEndian: json.withUnsafeBytes { CRC32C.checksum($0) })
            try out.append(json)
        } catch {
            abort()
            throw error
        }
    }

    deinit { if !finished { abort() } }

    /// Appends the records of the next window: `positions × header.recordBytes` bytes.
    public func append(positions: Int, records: UnsafeRawBufferPointer) throws {
        guard windowsWritten < header.data.windows else {
            throw FormatError("reference writer: more windows than the header's \(header.data.windows)")
        }
        guard records.count == positions * header.recordBytes else {
            throw FormatError("reference writer: \(records.count) bytes for \(positions) positions of \(header.recordBytes) bytes")
        }
        let bound = ZSTD_compressBound(records.count)
        if compressed.count < bound { compressed = [UInt8](repeating: 0, count: bound) }
        let stored = compressed.withUnsafeMutableBytes {
            ZSTD_compress($0.baseAddress, bound, records.baseAddress, records.count, zstdLevel)
        }
        guard ZSTD_isError(stored) == 0 else {
            throw FormatError("zstd: \(String(cString: ZSTD_getErrorName(stored)))")
        }
        try compressed.withUnsafeBytes { bytes in
            let frame = UnsafeRawBufferPointer(rebasing: bytes[0..<stored])
            try out.append(littleEndian: UInt32(positions))
            try out.append(littleEndian: CRC32C.checksum(frame))
            try out.append(littleEndian: UInt64(stored))
            try out.append(frame)
        }
        windowsWritten += 1
    }

    /// Bytes written so far.
    public var bytesWritten: Int { out.position }

    /// Syncs the file and renames it onto the output path; every window must have been written.
    public func finish() throws {
        guard windowsWritten == header.data.windows else {
            throw FormatError("reference writer: \(windowsWritten) of \(header.data.windows) windows written")
        }
        do {
            try out.commit(renamingTo: outputPath)
            finished = true
        } catch {
            abort()
            throw error
        }
    }

    /// Removes the temporary file.
    public func abort() { out.discard() }
}

/// Reads a reference file block by block, checking every length against the header and what
/// the file holds, and every block's checksum, before decompressing it.
public final class ReferenceFileReader {
    public let header: ReferenceHeader
    public let path: String
    private let handle: FileHandle
    private let fileSize: Int
    private var offset: Int
    private var windowsRead = 0
    private var stored: [UInt8] = []
    private var name: String { URL(fileURLWithPath: path).lastPathComponent }

    /// Whether the file at `path` starts with the reference file magic.
    public static func isReferenceFile(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 8)).map { [UInt8]($0) } == ReferenceFileFormat.magic
    }

    public init(path: String) throws {
        self.path = path
        let name = URL(fileURLWithPath: path).lastPathComponent
        guard let handle = FileHandle(forReadingAtPath: path) else { throw FormatError("cannot open reference file \(path)") }
        self.handle = handle
        fileSize = Int((try? handle.seekToEnd()) ?? 0)
        try handle.seek(toOffset: 0)
        let start = [UInt8](try handle.read(upToCount: 16) ?? Data())
        guard start.count == 16, Array(start[0..<8]) == ReferenceFileFormat.magic else {
            throw FormatError("\(name) is not a moepack reference file (made by `moepack eval --save-reference`)")
        }
        let length = Int(Self.u32(start, 8)), crc = Self.u32(start, 12)
        guard length > 0, length <= ReferenceFileFormat.maxHeaderBytes, 16 + length <= fileSize else {
            throw FormatError("\(name): the header length (\(length) bytes) is invalid or past the end of the file: the file is truncated or corrupted")
        }
        let json = try handle.read(upToCount: length) ?? Data()
        guard json.count == length, CRC32C.checksum(json) == crc else {
            throw FormatError("\(name): header checksum mismatch: the file is corrupted")
        }
        let decoded: ReferenceHeader
        do { decoded = try JSONDecoder().decode(ReferenceHeader.self, from: json) } catch {
            throw FormatError("\(name): the header is not a valid reference header")
        }
        guard decoded.format == ReferenceHeader.formatName else { throw FormatError("\(name) is not a moepack reference file") }
        guard decoded.version == ReferenceHeader.currentVersion else {
            throw FormatError("\(name) is a version \(decoded.version) reference file; this moepack reads version \(ReferenceHeader.currentVersion): make it again with `moepack eval --save-reference`")
        }
        let d = decoded.data
        guard decoded.model.vocabSize > 0, decoded.model.vocabSize <= ModelConfig.maxVocabSize,
              d.context >= 2, d.tokens >= 2, d.windows >= 1, d.windows <= d.tokens,
              d.predictions >= 1, d.predictions < d.tokens,
              decoded.logProbStep > 0, decoded.logProbStep.isFinite else {
            throw FormatError("\(name): the header's sizes are out of range: the file is corrupted")
        }
        header = decoded
        offset = 16 + length
    }

    deinit { try? handle.close() }

    /// The records of the next window, which must have `positions` positions.
    public func nextWindow(positions: Int) throws -> [UInt8] {
        let index = windowsRead + 1, total = header.data.windows
        guard windowsRead < total else { throw FormatError("\(name): asked for more than its \(total) windows") }
        guard offset + ReferenceFileFormat.blockHeaderBytes <= fileSize else {
            throw FormatError("\(name) is truncated: window \(index) of \(total) is missing")
        }
        let blockHeader = [UInt8](try handle.read(upToCount: ReferenceFileFormat.blockHeaderBytes) ?? Data())
        guard blockHeader.count == ReferenceFileFormat.blockHeaderBytes else {
            throw FormatError("\(name) is truncated: window \(index) of \(total) is missing")
        }
        let count = Int(Self.u32(blockHeader, 0)), crc = Self.u32(blockHeader, 4)
        let storedLength = Self.u64(blockHeader, 8)
        guard count == positions else {
            throw FormatError("\(name): window \(index) has \(count) positions where \(positions) were expected: the file is corrupted")
        }
        let rawLength = positions * header.recordBytes
        let remaining = fileSize - offset - ReferenceFileFormat.blockHeaderBytes
        guard storedLength <= UInt64(ZSTD_compressBound(rawLength)) else {
            throw FormatError("\(name): window \(index) claims \(storedLength) stored bytes, more than \(rawLength) bytes can take: the file is corrupted")
        }
        guard storedLength <= UInt64(remaining) else {
            throw FormatError("\(name) is truncated: window \(index) of \(total) ends past the end of the file")
        }
        let length = Int(storedLength)
        let data = try handle.read(upToCount: length) ?? Data()
        guard data.count == length else { throw FormatError("\(name) is truncated in window \(index)") }
        guard CRC32C.checksum(data) == crc else {
            throw FormatError("\(name): checksum mismatch in window \(index): the file is corrupted")
        }
        var raw = [UInt8](repeating: 0, count: rawLength)
        let written = data.withUnsafeBytes { src in
            raw.withUnsafeMutableBytes { ZSTD_decompress($0.baseAddress, rawLength, src.baseAddress, length) }
        }
        guard ZSTD_isError(written) == 0, written == rawLength else {
            throw FormatError("\(name): window \(index) does not decompress to its \(rawLength) bytes: the file is corrupted")
        }
        offset += ReferenceFileFormat.blockHeaderBytes + length
        windowsRead += 1
        if windowsRead == total, offset != fileSize {
            throw FormatError("\(name) has \(fileSize - offset) bytes after its last window: the file is corrupted")
        }
        return raw
    }

    private static func u32(_ b: [UInt8], _ at: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(b[at + $1]) << (8 * UInt32($1)) }
    }

    private static func u64(_ b: [UInt8], _ at: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) }
    }
}

extension FileOutput {
    func append(littleEndian value: UInt32) throws {
        try withUnsafeBytes(of: value.littleEndian) { try append($0) }
    }

    func append(littleEndian value: UInt64) throws {
        try withUnsafeBytes(of: value.littleEndian) { try append($0) }
    }
}

extension JSONEncoder {
    static var sortedKeys: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}
