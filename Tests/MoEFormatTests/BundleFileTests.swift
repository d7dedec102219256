import Foundation
import MoEFormat
import MoETestSupport
import XCTest

/// Round trips and every kind of damaged bundle: each must fail with its own message.
final class BundleFileTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    let weights: [Float] = (0..<(6 * 8)).map { Float($0) * 0.25 - 3 }

    /// A small bundle with one raw and one zstd payload and a carried file.
    func writeBundle(_ name: String = "b.mpk") throws -> URL {
        let url = dir.appendingPathComponent(name)
        let writer = try BundleWriter(outputPath: url.path)
        let raw = try weights.withUnsafeBytes { try writer.addPayload($0) }
        let packed = try weights.withUnsafeBytes { try writer.addPayload($0, compression: .zstd) }
        let file = try Data("tokenizer bytes".utf8).withUnsafeBytes { try writer.addPayload($0) }
        let config = try String(contentsOf: Fixtures.checkpoint("moe_basic").appendingPathComponent("config.json"), encoding: .utf8)
        let manifest = BundleManifest(
            alignment: writer.alignment, configJSON: config,
            tensors: [
                BundleTensor(name: "a", tensorClass: .attention, format: .f32, shape: [6, 8], layer: 0, expert: nil, payload: raw),
                BundleTensor(name: "z", tensorClass: .routedExperts, format: .f32, shape: [6, 8], layer: 1, expert: 3, payload: packed),
            ],
            files: [BundleFileEntry(name: "tokenizer.model", payload: file)],
            profile: ProfileRecord(name: "test", toml: "name = \"test\"\n"), pruning: ["1": [0, 2, 3]],
            provenance: Provenance(sourceFiles: [], parameters: ["k": "v"]))
        try writer.finish(manifest: manifest)
        return url
    }

    func floats(_ bytes: PayloadBytes) -> [Float] {
        (0..<(bytes.buffer.count / 4)).map { bytes.buffer.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
    }

    func testRoundTrip() throws {
        let url = try writeBundle()
        let bundle = try BundleFile(path: url.path)
        XCTAssertEqual(bundle.manifest.tensors.map(\.name), ["a", "z"])
        let a = try XCTUnwrap(bundle.tensor("a")), z = try XCTUnwrap(bundle.tensor("z"))
        XCTAssertEqual(a.payload.offset % BundleFormat.alignment, 0)
        XCTAssertEqual(z.payload.offset % BundleFormat.alignment, 0)
        XCTAssertEqual(z.payload.compression, .zstd)
        let rawBytes = try bundle.payload(a.payload, what: "a")
        XCTAssertTrue(rawBytes.isMapped)
        XCTAssertEqual(floats(rawBytes), weights)
        let unpacked = try bundle.payload(z.payload, what: "z")
        XCTAssertFalse(unpacked.isMapped)
        XCTAssertEqual(floats(unpacked), weights)
        XCTAssertEqual(try bundle.fileData(named: "tokenizer.model"), Data("tokenizer bytes".utf8))
        XCTAssertEqual(bundle.keptExperts(layer: 1), [0, 2, 3])
        XCTAssertNil(bundle.keptExperts(layer: 2))
        XCTAssertEqual(try bundle.verifyPayloads(), 3)
        // No temporary file is left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["b.mpk"])
    }

    /// Payloads decompressed side by side into one arena: aligned slots, the same bytes as a
    /// standalone decompression, and uncompressed payloads still served from the map.
    func testArenaPayloads() throws {
        let (offsets, capacity) = PayloadArena.layout([3, 64, 65, 0, 8])
        XCTAssertEqual(offsets, [0, 64, 128, 256, 256])
        XCTAssertEqual(capacity, 320)
        let bundle = try BundleFile(path: writeBundle().path)
        let a = try XCTUnwrap(bundle.tensor("a")), z = try XCTUnwrap(bundle.tensor("z"))
        let slots = PayloadArena.layout([7, z.payload.rawLength])
        let arena = try PayloadArena(capacity: slots.capacity)
        let unpacked = try bundle.payload(z.payload, what: "z", into: arena, at: slots.offsets[1])
        XCTAssertFalse(unpacked.isMapped)
        XCTAssertEqual(Int(bitPattern: unpacked.buffer.baseAddress) % PayloadArena.alignment, 0)
        XCTAssertEqual(floats(unpacked), weights)
        let raw = try bundle.payload(a.payload, what: "a", into: arena, at: 0)
        XCTAssertTrue(raw.isMapped)
        XCTAssertEqual(floats(raw), weights)
    }

    func testWriterIsDeterministic() throws {
        let a = try Data(contentsOf: writeBundle("1.mpk")), b = try Data(contentsOf: writeBundle("2.mpk"))
        XCTAssertEqual(a, b)
    }

    func testAbortedWriterLeavesNothing() throws {
        let url = dir.appendingPathComponent("never.mpk")
        do {
            let writer = try BundleWriter(outputPath: url.path)
            _ = try weights.withUnsafeBytes { try writer.addPayload($0) }
            XCTAssertTrue(FileManager.default.fileExists(atPath: writer.temporaryPath))
            // Dropped without finish.
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }

    // MARK: damaged files

    func assertOpenFails(_ data: Data, _ expected: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let url = dir.appendingPathComponent("damaged.mpk")
        try data.write(to: url)
        XCTAssertThrowsError(try BundleFile(path: url.path), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(expected), "\(error)", file: file, line: line)
        }
    }

    func testTruncated() throws {
        let data = try Data(contentsOf: writeBundle())
        try assertOpenFails(data.prefix(data.count - 10), "is truncated: header says \(data.count) bytes")
        try assertOpenFails(data.prefix(40), "is truncated: 40 bytes")
        try assertOpenFails(Data(), "is truncated: 0 bytes")
    }

    func testWrongMagic() throws {
        var data = try Data(contentsOf: writeBundle())
        data[0] = UInt8(ascii: "X")
        try assertOpenFails(data, "is not a moepack bundle (bad magic)")
        try assertOpenFails(Data("{\"not\": \"a bundle\"}".utf8), "bad magic")
    }

    func testFutureVersion() throws {
        var data = try Data(contentsOf: writeBundle())
        let bundle = try BundleFile(path: dir.appendingPathComponent("b.mpk").path)
        var header = bundle.header
        header.version = 2
        data.replaceSubrange(0..<64, with: header.encoded())
        try assertOpenFails(data, "bundle format version 2 is newer than this moepack supports (1)")
    }

    func testFlippedHeaderByte() throws {
        var data = try Data(contentsOf: writeBundle())
        data[20] ^= 0x01 // manifest offset
        try assertOpenFails(data, "header checksum mismatch")
    }

    func testFlippedManifestByte() throws {
        let url = try writeBundle()
        var data = try Data(contentsOf: url)
        let offset = try BundleFile(path: url.path).header.manifestOffset
        data[offset + 5] ^= 0x20
        try assertOpenFails(data, "manifest checksum mismatch")
    }

    func testFlippedPayloadByteIsCaughtWhenUsed() throws {
        let url = try writeBundle()
        var data = try Data(contentsOf: url)
        let z = try XCTUnwrap(BundleFile(path: url.path).tensor("z"))
        data[z.payload.offset + z.payload.length / 2] ^= 0x04
        try data.write(to: url)
        let bundle = try BundleFile(path: url.path) // header and manifest are intact
        XCTAssertNoThrow(try bundle.payload(try XCTUnwrap(bundle.tensor("a")).payload, what: "tensor a"))
        XCTAssertThrowsError(try bundle.payload(z.payload, what: "tensor z")) { error in
            XCTAssertTrue("\(error)".contains("checksum mismatch in tensor z"), "\(error)")
        }
        XCTAssertThrowsError(try bundle.verifyPayloads()) { error in
            XCTAssertTrue("\(error)".contains("checksum mismatch in tensor z"), "\(error)")
        }
    }

    /// Rewrites the manifest (with valid checksums) so only the structural checks can object.
    func rewritten(_ url: URL, _ change: (inout BundleManifest) -> Void) throws -> Data {
        let bundle = try BundleFile(path: url.path)
        var manifest = bundle.manifest
        change(&manifest)
        let json = try manifest.encoded()
        var data = try Data(contentsOf: url).prefix(bundle.header.manifestOffset)
        data.append(json)
        let header = BundleHeader(manifestOffset: bundle.header.manifestOffset, manifestLength: json.count,
                                  fileLength: data.count, manifestCRC: CRC32C.checksum(json))
        data.replaceSubrange(0..<64, with: header.encoded())
        return Data(data)
    }

    func testManifestPointingOutsideTheFile() throws {
        let url = try writeBundle()
        try assertOpenFails(try rewritten(url) { $0.tensors[0].payload.offset = 1 << 40 }, "tensor a at [1099511627776, +192) points outside the payload area")
        try assertOpenFails(try rewritten(url) { $0.tensors[0].payload.length = Int.max }, "points outside the payload area")
        try assertOpenFails(try rewritten(url) { $0.files[0].payload.offset = -64 }, "file tokenizer.model at [-64")
    }

    func testManifestInconsistencies() throws {
        let url = try writeBundle()
        try assertOpenFails(try rewritten(url) { $0.tensors[0].shape = [7, 8] }, "tensor a has 192 bytes, but [7, 8] in f32 needs 224")
        try assertOpenFails(try rewritten(url) { $0.tensors[0].format = .int4g64 }, "tensor a shape [6, 8] cannot be stored as int4g64")
        try assertOpenFails(try rewritten(url) { $0.tensors[1].payload = $0.tensors[0].payload }, "overlap")
        try assertOpenFails(try rewritten(url) { $0.tensors[1].name = "a" }, "tensor a appears twice")
        try assertOpenFails(try rewritten(url) { $0.tensors[1].payload.rawLength = 1 << 50 }, "claims 1125899906842624 bytes")
        try assertOpenFails(try rewritten(url) { $0.tensors[0].payload.offset += 4 }, "is not aligned")
        try assertOpenFails(try rewritten(url) { $0.configJSON = "{}" }, "unsupported architecture")
    }

    func testMalformedManifestJSON() throws {
        let url = try writeBundle()
        let bundle = try BundleFile(path: url.path)
        var data = try Data(contentsOf: url).prefix(bundle.header.manifestOffset)
        let json = Data("{\"format_version\": 1}".utf8)
        data.append(json)
        let header = BundleHeader(manifestOffset: bundle.header.manifestOffset, manifestLength: json.count,
                                  fileLength: data.count, manifestCRC: CRC32C.checksum(json))
        data.replaceSubrange(0..<64, with: header.encoded())
        try assertOpenFails(Data(data), "bundle manifest is malformed: missing")
    }

    func testWeightFormatSizes() {
        XCTAssertEqual(WeightFormat.int8.rowBytes(cols: 64), 68)
        XCTAssertEqual(WeightFormat.int4g64.rowBytes(cols: 128), 2 * (2 + 32))
        XCTAssertEqual(WeightFormat.int4g32a.rowBytes(cols: 64), 2 * (4 + 16))
        XCTAssertNil(WeightFormat.int4g64.rowBytes(cols: 48))
        XCTAssertNil(WeightFormat.f32.matrixBytes(rows: Int.max, cols: 2))
        XCTAssertEqual(WeightFormat.int4g64.bitsPerWeight(cols: 64), 4.25)
    }
}
