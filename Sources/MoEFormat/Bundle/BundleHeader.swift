import Foundation

public enum BundleFormat {
    public static let magic: [UInt8] = Array("MOEPACK\0".utf8)
    public static let version = 1
    public static let headerSize = 64
    /// Payload alignment: every section starts at a multiple of this many bytes, so payloads
    /// mapped with the file are aligned for any SIMD load (see docs/format.md).
    public static let alignment = 64
    public static let toolVersion = "0.1.0"
}

/// The fixed 64-byte header at offset 0 (all integers little-endian):
///
///     0  magic "MOEPACK\0"      8 bytes
///     8  format version         u32
///    12  header size (64)       u32
///    16  manifest offset        u64
///    24  manifest length        u64
///    32  file length            u64   (detects truncation)
///    40  manifest CRC-32C       u32
///    44  alignment              u32
///    48  reserved, zero         12 bytes
///    60  header CRC-32C         u32   (of bytes 0..<60)
public struct BundleHeader: Sendable, Equatable {
    public var version: Int
    public var manifestOffset: Int
    public var manifestLength: Int
    public var fileLength: Int
    public var manifestCRC: UInt32
    public var alignment: Int

    public init(version: Int = BundleFormat.version, manifestOffset: Int, manifestLength: Int, fileLength: Int,
                manifestCRC: UInt32, alignment: Int = BundleFormat.alignment) {
        self.version = version
        self.manifestOffset = manifestOffset
        self.manifestLength = manifestLength
        self.fileLength = fileLength
        self.manifestCRC = manifestCRC
        self.alignment = alignment
    }

    public func encoded() -> [UInt8] {
        var bytes = BundleFormat.magic
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
        put(UInt32(version))
        put(UInt32(BundleFormat.headerSize))
        put(UInt64(manifestOffset))
        put(UInt64(manifestLength))
        put(UInt64(fileLength))
        put(manifestCRC)
        put(UInt32(alignment))
        bytes.append(contentsOf: [UInt8](repeating: 0, count: 12))
        put(bytes.withUnsafeBytes { CRC32C.checksum($0) })
        return bytes
    }

    /// Parses and checks the header of a file of `fileSize` bytes. Order of checks: size,
    /// magic, version (a newer layout may differ), checksum, then the values.
    public static func decode(_ raw: UnsafeRawBufferPointer, fileSize: Int, name: String) throws -> BundleHeader {
        guard fileSize >= BundleFormat.headerSize, raw.count >= BundleFormat.headerSize else {
            if fileSize >= BundleFormat.magic.count, !raw.starts(with: BundleFormat.magic) {
                throw FormatError("\(name) is not a moepack bundle (bad magic)")
            }
            throw FormatError("\(name) is truncated: \(fileSize) bytes, less than the \(BundleFormat.headerSize)-byte header")
        }
        guard raw.starts(with: BundleFormat.magic) else {
            throw FormatError("\(name) is not a moepack bundle (bad magic)")
        }
        func u32(_ at: Int) -> UInt32 { UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
        func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
        let version = u32(8)
        guard version != 0 else { throw FormatError("\(name): bundle format version 0 is invalid") }
        guard version <= UInt32(BundleFormat.version) else {
            throw FormatError("\(name): bundle format version \(version) is newer than this moepack supports (\(BundleFormat.version)); upgrade moepack")
        }
        let stored = u32(60)
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<60]))
        guard stored == computed else {
            throw FormatError("\(name): header checksum mismatch (stored \(hex(stored)), computed \(hex(computed))): the header is corrupted")
        }
        guard u32(12) == UInt32(BundleFormat.headerSize) else {
            throw FormatError("\(name): header size \(u32(12)) is not \(BundleFormat.headerSize)")
        }
        let limit = UInt64(Int.max)
        let fileLength = u64(32), manifestOffset = u64(16), manifestLength = u64(24)
        guard fileLength <= limit, manifestOffset <= limit, manifestLength <= limit else {
            throw FormatError("\(name): header values are out of range")
        }
        if Int(fileLength) > fileSize {
            throw FormatError("\(name) is truncated: header says \(fileLength) bytes, the file has \(fileSize)")
        }
        if Int(fileLength) < fileSize {
            throw FormatError("\(name) has \(fileSize - Int(fileLength)) unexpected bytes after the end of the bundle (\(fileLength) bytes)")
        }
        let alignment = Int(u32(44))
        guard alignment >= 8, alignment <= 1 << 16, alignment & (alignment - 1) == 0 else {
            throw FormatError("\(name): alignment \(alignment) is not a power of two between 8 and 65536")
        }
        guard manifestOffset >= UInt64(BundleFormat.headerSize), manifestLength <= fileLength,
              manifestOffset <= fileLength - manifestLength else {
            throw FormatError("\(name): manifest [\(manifestOffset), +\(manifestLength)) lies outside the file (\(fileLength) bytes)")
        }
        return BundleHeader(version: Int(version), manifestOffset: Int(manifestOffset), manifestLength: Int(manifestLength),
                            fileLength: Int(fileLength), manifestCRC: u32(40), alignment: alignment)
    }
}

func hex(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - s.count) + s
}
