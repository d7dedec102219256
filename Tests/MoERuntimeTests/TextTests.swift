import XCTest
@testable import MoERuntime

final class StopMatcherTests: XCTestCase {
    func testStopStringSplitAcrossChunksIsNeverShown() {
        var matcher = StopMatcher(stopStrings: ["\n\n"])
        XCTAssertEqual(matcher.append("Hello\n"), "Hello")
        XCTAssertEqual(matcher.append("\nWorld"), "")
        XCTAssertTrue(matcher.stopped)
        XCTAssertEqual(matcher.append("more"), "")
        XCTAssertEqual(matcher.flush(), "")
    }

    func testPossiblePrefixIsHeldBackThenReleased() {
        var matcher = StopMatcher(stopStrings: ["END", "STOP"])
        XCTAssertEqual(matcher.append("abcE"), "abc")
        XCTAssertEqual(matcher.append("N"), "")
        XCTAssertEqual(matcher.append("x"), "ENx")
        XCTAssertEqual(matcher.append("ST"), "")
        XCTAssertFalse(matcher.stopped)
        XCTAssertEqual(matcher.flush(), "ST")
    }

    func testEarliestStopStringWins() {
        var matcher = StopMatcher(stopStrings: ["cd", "b"])
        XCTAssertEqual(matcher.append("abcd"), "a")
        XCTAssertTrue(matcher.stopped)
    }

    func testNoStopStringsPassesEverything() {
        var matcher = StopMatcher(stopStrings: [""])
        XCTAssertEqual(matcher.append("a b\u{1F600}"), "a b\u{1F600}")
    }
}

final class TextStreamTests: XCTestCase {
    func testChunksJoinToTheDecodedTextAndWaitForWholeCharacters() {
        let tokenizer = WordTokenizer()
        var stream = TextStream(tokenizer: tokenizer, context: [1, 7, 8])
        XCTAssertEqual(stream.append(9), " w9")
        XCTAssertEqual(stream.append(100), "")
        XCTAssertEqual(stream.append(101), "é")
        XCTAssertEqual(stream.append(102), "")
        XCTAssertEqual(stream.append(103), "")
        XCTAssertEqual(stream.append(104), "€")
        XCTAssertEqual(stream.append(10), " w10")
        XCTAssertEqual(stream.append(102), "")
        XCTAssertEqual(stream.flush(), "\u{FFFD}")
    }

    func testWithoutContextTheFirstWordLosesItsSpaceAsInAFullDecode() {
        var stream = TextStream(tokenizer: WordTokenizer())
        let ids: [Int32] = [5, 6, 100, 101, 7]
        let text = ids.map { stream.append($0) }.joined() + stream.flush()
        XCTAssertEqual(text, WordTokenizer().decode(ids, skipSpecialTokens: true))
        XCTAssertEqual(text, "w5 w6é w7")
    }
}
