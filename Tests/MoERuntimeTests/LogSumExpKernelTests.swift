import Foundation
import MoEKernels
import MoERuntime
import XCTest

/// moe_log_sum_exp_f32 (float exponentials, SIMD where available) against the evaluator's
/// double-precision moe_log_sum_exp, on every kernel path.
final class LogSumExpKernelTests: XCTestCase {
    func testMatchesDoublePrecisionOnEveryPath() throws {
        var seed: UInt64 = 5
        func random() -> Float {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Float(seed >> 40) / Float(1 << 24)
        }
        var rows: [[Float]] = [[0], [3.5], [1, 2, 3, 4, 5, 6, 7], [Float](repeating: -2, count: 8)]
        for n in [9, 100, 1023, 1024, 1025, 32000] {
            rows.append((0..<n).map { _ in (random() * 2 - 1) * 30 })
        }
        rows.append((0..<3000).map { i in i == 1234 ? 50 : (random() - 1) * 200 })  // one dominant logit, most below e^-87
        rows.append([-.infinity, 1, -.infinity, 2, .nan, 0.5, -.infinity, 3, 1, .nan])
        let before = KernelConfig.path
        defer { try? KernelConfig.setPath(before) }
        for path in KernelPath.allCases where path.isAvailable {
            try KernelConfig.setPath(path)
            for row in rows {
                let expected = row.withUnsafeBufferPointer { moe_log_sum_exp($0.baseAddress!, $0.count) }
                let got = row.withUnsafeBufferPointer { moe_log_sum_exp_f32($0.baseAddress!, Int64($0.count)) }
                XCTAssertEqual(got, expected, accuracy: 1e-5 * max(1, abs(expected)), "\(path.name) n \(row.count)")
            }
            XCTAssertEqual(moe_log_sum_exp_f32(nil, 0), -.infinity)
            let allNegativeInfinity = [Float](repeating: -.infinity, count: 11)
            XCTAssertEqual(allNegativeInfinity.withUnsafeBufferPointer { moe_log_sum_exp_f32($0.baseAddress!, 11) }, -.infinity)
        }
    }
}
