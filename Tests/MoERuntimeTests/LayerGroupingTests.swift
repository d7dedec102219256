import XCTest
@testable import MoERuntime

final class LayerGroupingTests: XCTestCase {
    /// Consecutive windows share a pass while their hidden states fit the budget; a window over
    /// it runs alone.
    func testWindowsAreGroupedWithinTheBudget() {
        XCTAssertEqual(ErnieModel.windowGroups([4, 4, 4, 1], bytesPerToken: 2, budget: 16), [[0, 1], [2, 3]])
        XCTAssertEqual(ErnieModel.windowGroups([9, 1], bytesPerToken: 2, budget: 16), [[0], [1]])
        XCTAssertEqual(ErnieModel.windowGroups([3, 3], bytesPerToken: 1, budget: 1), [[0], [1]])
        XCTAssertEqual(ErnieModel.windowGroups([], bytesPerToken: 1, budget: 1), [])
    }
}
