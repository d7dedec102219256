import Foundation
@testable import MoEExport
import MoEFormat
import MoEKernels
import XCTest

/// Every bundle format into every ggml type the export writes for it: exact where docs/export.md
/// says exact (compared value for value with moepack's decoder), int8 → Q8_0 within its bound.
final class GGUFBlocksTests: XCTestCase {
    let rows = 3, cols = 256

    func weights() -> [Float] {
        var state: UInt64 = 0x9E3779B97F4A7C15
        return (0..<(rows * cols)).map { i in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let u = Float(state >> 40) / Float(1 << 24) - 0.5
            return u * (i % 7 == 0 ? 0.3 : 0.05)
        }
    }

    func quantize(_ format: WeightFormat, _ w: [Float]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: format.matrixBytes(rows: rows, cols: cols)!)
        let rc = out.withUnsafeMutableBytes { moe_quantize(format.id, w, Int64(rows), Int64(cols), $0.baseAddress, $0.count, nil) }
        XCTAssertEqual(rc, 0)
        return out
    }

    func decode(_ format: WeightFormat, _ bytes: [UInt8]) -> [Float] {
        var out = [Float](repeating: .nan, count: rows * cols)
        let rc = bytes.withUnsafeBytes { b in out.withUnsafeMutableBufferPointer { moe_dequantize(format.id, b.baseAddress, Int64(rows), Int64(cols), $0.baseAddress) } }
        XCTAssertEqual(rc, 0)
        return out
    }

    /// ggml's dequantize_row_q8_0: f16 d, 32 int8.
    func decodeQ8_0(_ bytes: [UInt8]) -> [Float] {
        stride(from: 0, to: bytes.count, by: 34).flatMap { b -> [Float] in
            let d = Float(Float16(bitPattern: UInt16(bytes[b]) | UInt16(bytes[b + 1]) << 8))
            return (0..<32).map { d * Float(Int8(bitPattern: bytes[b + 2 + $0])) }
        }
    }

    /// ggml's type decoded through moepack's decoder of the same byte layout.
    func decodeGGML(_ type: GGMLType, _ bytes: [UInt8]) -> [Float] {
        switch type {
        case .q4_0: decode(.q4g32, bytes)
        case .q4_1: decode(.int4g32a, bytes)
        case .iq4_nl: decode(.nl4g32, bytes)
        case .q8_0: decodeQ8_0(bytes)
        case .f32: bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        case .f16: decode(.f16, bytes)
        case .bf16: decode(.bf16, bytes)
        }
    }

    func convert(_ format: WeightFormat, _ bytes: [UInt8], to type: GGMLType) throws -> [UInt8] {
        var out: [UInt8] = [], err = GGUFBlocks.Int8Error()
        try bytes.withUnsafeBytes { try GGUFBlocks.convert($0, format: format, rows: rows, cols: cols, to: type, into: &out, int8Error: &err) }
        XCTAssertEqual(out.count, type.rowBytes(cols: cols)! * rows)
        return out
    }

    func testExactConversionsDecodeToTheSameValues() throws {
        let w = weights()
        for format in WeightFormat.allCases where format != .int8 {
            let q = quantize(format, w)
            let reference = decode(format, q)
            var targets: Set<GGMLType> = [GGUFBlocks.nativeType(format), .f32]
            if GGUFBlocks.nativeType(format) == .q4_0 { targets.formUnion([.q4_1, .q8_0]) }
            if format == .nl4g32 { targets.insert(.q8_0) }
            for type in targets {
                XCTAssertTrue(GGUFBlocks.isExact(format, to: type), "\(format) -> \(type)")
                XCTAssertEqual(decodeGGML(type, try convert(format, q, to: type)), reference, "\(format) -> \(type.name)")
            }
        }
    }

    func testInt8BecomesQ8_0WithinTheF16ScaleRounding() throws {
        let w = weights()
        let q = quantize(.int8, w)
        let reference = decode(.int8, q)
        var out: [UInt8] = [], err = GGUFBlocks.Int8Error()
        try q.withUnsafeBytes { try GGUFBlocks.convert($0, format: .int8, rows: rows, cols: cols, to: .q8_0, into: &out, int8Error: &err) }
        let mine = decodeQ8_0(out)
        for r in 0..<rows {
            let row = reference[(r * cols)..<((r + 1) * cols)]
            let bound = (row.map(abs).max() ?? 0) * 0x1p-11
            for j in row.indices { XCTAssertLessThanOrEqual(abs(mine[j] - reference[j]), bound) }
        }
        XCTAssertEqual(err.weights, rows * cols)
        XCTAssertLessThanOrEqual(err.maxRelative, 0x1p-11)
    }

    func testTheCommonTypeOfMixedExperts() {
        XCTAssertEqual(GGUFBlocks.commonType([.q4g64, .int4g128]), .q4_0)
        XCTAssertEqual(GGUFBlocks.commonType([.q4g64, .int4g32a]), .q4_1)
        XCTAssertEqual(GGUFBlocks.commonType([.q4g32, .nl4g32]), .q8_0)
        XCTAssertEqual(GGUFBlocks.commonType([.q4g32, .int8]), .q8_0)
        XCTAssertEqual(GGUFBlocks.commonType([.int4g32a, .int8]), .f32)
        XCTAssertEqual(GGUFBlocks.commonType([.bf16, .f16]), .f32)
    }

    func testGGUFWriterRejectsBadShapesAndIncompleteData() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("x.gguf").path
        XCTAssertThrowsError(try GGUFWriter(outputPath: path, metadata: [], tensors: [GGUFTensorInfo(name: "a", dimensions: [33, 2], type: .q4_0)]))
        let w = try GGUFWriter(outputPath: path, metadata: [("k", .string("v"))], tensors: [GGUFTensorInfo(name: "a", dimensions: [32], type: .q8_0)])
        try w.append([UInt8](repeating: 1, count: 10))
        XCTAssertThrowsError(try w.finish())
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }
}
