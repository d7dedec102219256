import Foundation
@testable import MoEFormat
import XCTest

final class ChecksumTests: XCTestCase {
    func testCRC32CStandardCheckValue() {
        // The CRC-32C check value from the iSCSI specification (RFC 3720).
        XCTAssertEqual(CRC32C.checksum(Data("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum(Data()), 0)
        // 32 zero bytes, RFC 3720 B.4.
        XCTAssertEqual(CRC32C.checksum(Data(count: 32)), 0x8A91_36AA)
    }

    func testCRC32CIncrementalMatchesOneShot() {
        let bytes = Data((0..<1000).map { UInt8($0 % 251) })
        var crc = CRC32C()
        for start in stride(from: 0, to: bytes.count, by: 37) {
            bytes[start..<min(start + 37, bytes.count)].withUnsafeBytes { crc.update($0) }
        }
        XCTAssertEqual(crc.value, CRC32C.checksum(bytes))
    }

    /// The table-driven path (CPUs without a crc32 instruction) against the standard values and
    /// against the default path on every length up to 300 bytes, from odd offsets.
    func testSoftwareCRC32CMatchesDefaultPath() {
        var software = CRC32C()
        Data("123456789".utf8).withUnsafeBytes { software.updateInSoftware($0) }
        XCTAssertEqual(software.value, 0xE306_9283)
        let bytes = Data((0..<301).map { UInt8(($0 * 131 + 7) % 256) })
        for length in 0..<300 {
            let slice = bytes[1..<(1 + length)]
            var soft = CRC32C()
            slice.withUnsafeBytes { soft.updateInSoftware($0) }
            XCTAssertEqual(soft.value, CRC32C.checksum(slice), "length \(length)")
        }
    }

    func testSHA256KnownDigests() throws {
        var h = SHA256Hasher()
        h.update(Data("abc".utf8))
        XCTAssertEqual(h.finalizeHex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        var empty = SHA256Hasher()
        XCTAssertEqual(empty.finalizeHex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        // Fed in odd-sized pieces across block boundaries (digest from Python's hashlib).
        let bytes = Data((0..<1000).map { UInt8($0 % 251) })
        var pieces = SHA256Hasher()
        for start in stride(from: 0, to: bytes.count, by: 61) { pieces.update(bytes[start..<min(start + 61, bytes.count)]) }
        XCTAssertEqual(pieces.finalizeHex(), "4e4c294b331f7a2099a379bec34b9f9fc03dc46ab465d998f4d683da53487e6d")
    }
}
