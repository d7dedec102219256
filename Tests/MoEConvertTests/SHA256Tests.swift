import XCTest
@testable import MoEConvert

final class SHA256Tests: XCTestCase {
    private func digest(_ bytes: [UInt8]) -> String {
        var h = SHA256()
        h.update(bytes)
        return SHA256.hex(h.finalize())
    }

    func testKnownVectors() {
        // FIPS 180-4 examples.
        XCTAssertEqual(digest([]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(digest(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(digest(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    func testIncrementalUpdatesMatchOneShot() {
        let bytes = (0..<1000).map { UInt8($0 % 251) }
        var h = SHA256()
        for chunk in [0..<1, 1..<63, 63..<64, 64..<200, 200..<1000] { h.update(Array(bytes[chunk])) }
        // hashlib.sha256(bytes(i % 251 for i in range(1000))).hexdigest()
        XCTAssertEqual(SHA256.hex(h.finalize()), "4e4c294b331f7a2099a379bec34b9f9fc03dc46ab465d998f4d683da53487e6d")
    }
}
