import Foundation
import MoEFormat
import MoETestSupport
import XCTest

/// Builds safetensors files byte by byte, so each hostile case is exactly what the test says.
private func safetensors(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> Data {
    let json = Array(header.utf8)
    var length = (declaredLength ?? UInt64(json.count)).littleEndian
    var out = Data(bytes: &length, count: 8)
    out.append(contentsOf: json)
    out.append(contentsOf: data)
    return out
}

final class SafeTensorsTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws { directory = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    private func write(_ data: Data, _ name: String = "model.safetensors") throws -> String {
        let url = directory.appendingPathComponent(name)
        try data.write(to: url)
        return url.path
    }

    private func assertRejected(_ data: Data, _ expected: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let path = try write(data)
        XCTAssertThrowsError(try SafeTensorsFile(path: path), file: file, line: line) { error in
            let message = (error as? FormatError)?.message ?? "\(error)"
            XCTAssertTrue(message.contains(expected), "\"\(message)\" does not mention \"\(expected)\"", file: file, line: line)
        }
    }

    func testReadsValidFile() throws {
        let floats: [Float] = [1, -2, 3.5, 0.25]
        var bytes = [UInt8]()
        floats.withUnsafeBytes { bytes.append(contentsOf: $0) }
        bytes += [0x80, 0x3f, 0x00, 0xc0] // bf16 1.0, -2.0
        let header = #"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[16,20]}}"#
        let file = try SafeTensorsFile(path: write(safetensors(header: header, data: bytes)))
        XCTAssertEqual(file.metadata, ["format": "pt"])
        XCTAssertEqual(file.tensors["a"]?.shape, [2, 2])
        XCTAssertEqual(file.floats(file.tensors["a"]!), floats)
        XCTAssertEqual(file.floats(file.tensors["b"]!), [1, -2])
    }

    func testRejectsShortFile() throws {
        try assertRejected(Data([1, 2, 3]), "too short")
    }

    func testRejectsAbsurdHeaderLength() throws {
        try assertRejected(safetensors(header: "{}", declaredLength: 1 << 60), "exceeds the 100 MB limit")
    }

    func testRejectsHeaderLongerThanFile() throws {
        try assertRejected(safetensors(header: "{}", declaredLength: 4096), "larger than the file")
    }

    func testRejectsInvalidJSON() throws {
        try assertRejected(safetensors(header: "{not json"), "not valid JSON")
    }

    func testRejectsNonObjectHeader() throws {
        try assertRejected(safetensors(header: "[1, 2, 3]"), "does not start with '{'")
    }

    func testRejectsOffsetsOutOfRange() throws {
        let header = #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#
        try assertRejected(safetensors(header: header, data: [UInt8](repeating: 0, count: 8)), "outside the data section")
    }

    func testRejectsTruncatedData() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#
        try assertRejected(safetensors(header: header, data: [UInt8](repeating: 0, count: 12)), "outside the data section")
    }

    func testRejectsOverlappingTensors() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        try assertRejected(safetensors(header: header, data: [UInt8](repeating: 0, count: 12)), "overlap")
    }

    func testRejectsByteCountMismatch() throws {
        let header = #"{"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}}"#
        try assertRejected(safetensors(header: header, data: [UInt8](repeating: 0, count: 8)), "needs 6")
    }

    func testRejectsUnsupportedDtype() throws {
        let header = #"{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#
        try assertRejected(safetensors(header: header, data: [UInt8](repeating: 0, count: 8)), "unsupported dtype I64")
    }

    func testRejectsInvalidShape() throws {
        let header = #"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#
        try assertRejected(safetensors(header: header, data: [UInt8](repeating: 0, count: 4)), "invalid shape")
    }

    func testRejectsHugeShapeWithoutOverflow() throws {
        let header = #"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}"#
        try assertRejected(safetensors(header: header, data: [UInt8](repeating: 0, count: 4)), "does not fit")
    }

    func testRejectsMalformedEntry() throws {
        try assertRejected(safetensors(header: #"{"a":5}"#), "not an object")
        try assertRejected(safetensors(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#, data: [0, 0, 0, 0]), "invalid data_offsets")
    }

    /// The data section must be covered exactly: a header length one byte short still parses (the
    /// JSON ends in padding spaces) but would read every tensor one byte off.
    func testRejectsHeaderLengthOffByOne() throws {
        let floats: [Float] = [1, 2]
        var bytes = [UInt8]()
        floats.withUnsafeBytes { bytes.append(contentsOf: $0) }
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"# + "   "
        let exact = safetensors(header: header, data: bytes)
        XCTAssertEqual(try SafeTensorsFile(path: write(exact)).floats(SafeTensorsFile(path: write(exact)).tensors["a"]!), floats)
        try assertRejected(safetensors(header: header, data: bytes, declaredLength: UInt64(header.utf8.count - 1)),
                           "not described by the header")
        try assertRejected(safetensors(header: header, data: bytes, declaredLength: UInt64(header.utf8.count + 1)),
                           "not valid JSON")
    }

    func testRejectsHolesAndTrailingBytes() throws {
        let hole = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
        try assertRejected(safetensors(header: hole, data: [UInt8](repeating: 0, count: 12)), "hole of 4 bytes before tensor b")
        let late = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        try assertRejected(safetensors(header: late, data: [UInt8](repeating: 0, count: 8)), "hole of 4 bytes before tensor a")
        let trailing = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        try assertRejected(safetensors(header: trailing, data: [UInt8](repeating: 0, count: 6)), "2 bytes after the last tensor")
        // An empty tensor anywhere is fine.
        let empty = #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        XCTAssertEqual(try SafeTensorsFile(path: write(safetensors(header: empty, data: [0, 0, 0, 0]))).tensors.count, 2)
    }

    func testRejectsHeaderNotStartingWithBrace() throws {
        try assertRejected(safetensors(header: #" {"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#), "does not start with '{'")
    }

    func testMissingShardIsReported() throws {
        let dir = directory!
        try Data(contentsOf: Fixtures.checkpoint("moe_sharded").appendingPathComponent("config.json"))
            .write(to: dir.appendingPathComponent("config.json"))
        let index = #"{"weight_map":{"a":"model-00001-of-00002.safetensors"}}"#
        try Data(index.utf8).write(to: dir.appendingPathComponent("model.safetensors.index.json"))
        XCTAssertThrowsError(try Checkpoint(directory: dir)) { error in
            XCTAssertEqual((error as? FormatError)?.message,
                           "shard model-00001-of-00002.safetensors listed in model.safetensors.index.json is missing")
        }
    }

    func testShardedCheckpointResolvesEveryTensor() throws {
        let checkpoint = try Checkpoint(directory: Fixtures.checkpoint("moe_sharded"))
        XCTAssertGreaterThan(checkpoint.shards.count, 1)
        let layout = ModelLayout(config: checkpoint.config)
        XCTAssertEqual(Set(checkpoint.tensorNames), Set(layout.tensors.map(\.name)))
        let dtypes = Set(try checkpoint.tensorNames.map { try checkpoint.info($0).dtype })
        XCTAssertEqual(dtypes, [.f32, .f16])
    }
}
