import Foundation
import MoEKernels
import MoERuntime
import XCTest

/// moe_swiglu against silu(g)·u in double precision, on every kernel path, including arguments
/// beyond the range where e^-g is representable.
final class SwigluKernelTests: XCTestCase {
    func testMatchesReferenceOnEveryPath() throws {
        var gate: [Float] = [0, 1, -1, 0.5, -0.5, 3, -3, 20, -20, 87, -87, 88.5, -88.5, 100, -100, 1e-6, -1e-6]
        var seed: UInt64 = 11
        for _ in 0..<200 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            gate.append((Float(seed >> 40) / Float(1 << 24) * 2 - 1) * 12)
        }
        let up = gate.indices.map { Float($0 % 7) - 3.25 }
        let before = KernelConfig.path
        defer { try? KernelConfig.setPath(before) }
        for path in KernelPath.allCases where path.isAvailable {
            try KernelConfig.setPath(path)
            var out = gate
            moe_swiglu(&out, up, Int64(out.count))
            for i in gate.indices {
                let g = Double(gate[i])
                let expected = g / (1 + exp(-g)) * Double(up[i])
                XCTAssertEqual(Double(out[i]), expected, accuracy: 1e-6 * (1 + abs(expected)), "\(path.name) g \(g)")
            }
            var withNaN: [Float] = [.nan, 1, 2, 3, 4, 5, 6, 7, 8]
            moe_swiglu(&withNaN, [Float](repeating: 1, count: 9), 9)
            XCTAssertTrue(withNaN[0].isNaN, path.name)
        }
    }
}
