import MoEFormat
import MoEKernels
import XCTest
@testable import MoERuntime

/// The kernels' format table is the one source of names, ids and sizes.
final class FormatTableTests: XCTestCase {
    func testEveryIdHasOneNamedFormat() {
        XCTAssertEqual(WeightFormat.allCases.count, Int(MOE_FMT_COUNT))
        for id in 0..<Int32(MOE_FMT_COUNT) {
            let f = WeightFormat(id: id)
            XCTAssertNotNil(f, "id \(id)")
            XCTAssertEqual(f?.id, id)
            XCTAssertEqual(f?.rawValue, String(cString: moe_format_name(id)))
        }
        XCTAssertNil(moe_format_info(Int32(MOE_FMT_COUNT)))
        XCTAssertNil(moe_format_info(-1))
    }

    /// Ids are written into files by older code paths and must never move.
    func testIdsAreStable() {
        let ids: [WeightFormat: Int32] = [.f32: 0, .bf16: 1, .int8: 2, .int4g32: 3, .int4g64: 4, .int4g128: 5, .int4g32a: 6,
                                          .int4g64a: 7, .int4g128a: 8, .f16: 9, .q4g32: 10, .q4g64: 11, .q4g128: 12, .nl4g32: 13,
                                          .q3g32: 14, .q3g64: 15, .q2g32: 16, .q2g64: 17]
        for (f, id) in ids { XCTAssertEqual(f.id, id, "\(f)") }
    }

    func testRowBytesOfTheNewFormats() throws {
        XCTAssertEqual(WeightFormat.q4g32.rowBytes(cols: 64), 2 * (2 + 16))
        XCTAssertEqual(WeightFormat.q4g64.rowBytes(cols: 128), 2 * (2 + 32))
        XCTAssertEqual(WeightFormat.q4g128.rowBytes(cols: 256), 2 * (2 + 64))
        XCTAssertEqual(WeightFormat.nl4g32.rowBytes(cols: 96), 3 * (2 + 16))
        XCTAssertNil(WeightFormat.nl4g32.rowBytes(cols: 48))
        XCTAssertEqual(WeightFormat.nl4g32.bitsPerWeight(cols: 32), 4.5)
        XCTAssertEqual(try WeightFormat.q4g64.byteCount(rows: 3, cols: 64), 3 * 34)
        XCTAssertThrowsError(try WeightFormat.q4g64.byteCount(rows: 1, cols: 96)) {
            XCTAssertEqual(($0 as? QuantError)?.kind, .badShape)
        }
    }

    /// Sizes in Swift are the table's: every format, a few widths, against the rule written out.
    func testSizesFollowTheTableRule() {
        for f in WeightFormat.allCases {
            let t = f.traits
            for cols in [0, 32, 96, 128, 333, 1024] {
                let expected: Int? = t.group == 0 ? Int(t.header) + cols * Int(t.bits) / 8
                    : (cols % Int(t.group) == 0 ? cols / Int(t.group) * (Int(t.header) + Int(t.group) * Int(t.bits) / 8) : nil)
                XCTAssertEqual(f.rowBytes(cols: cols), expected, "\(f) cols \(cols)")
            }
        }
    }

    func testFamiliesDifferOnlyInGroup() {
        XCTAssertEqual(WeightFormat.int4g64.family, [.int4g32, .int4g64, .int4g128])
        XCTAssertEqual(WeightFormat.int4g64a.family, [.int4g32a, .int4g64a, .int4g128a])
        XCTAssertEqual(WeightFormat.q4g128.family, [.q4g32, .q4g64, .q4g128])
        XCTAssertEqual(WeightFormat.nl4g32.family, [.nl4g32])
        XCTAssertEqual(WeightFormat.q3g64.family, [.q3g32, .q3g64])
        XCTAssertEqual(WeightFormat.q2g32.family, [.q2g32, .q2g64])
        XCTAssertEqual(WeightFormat.int8.family, [.int8])
    }
}
