import XCTest
@testable import MoERuntime
import MoETestSupport
import MoETokenizer

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

final class TextStreamTokenizerTests: XCTestCase {
    /// With the tiny model's SentencePiece tokenizer (byte fallback for emoji and rare letters),
    /// streamed chunks join to exactly the text a full decode gives, and a prompt's context keeps
    /// the space before the first generated word.
    func testChunksJoinToTheFullDecode() throws {
        let tokenizer = try Tokenizer(directory: Fixtures.tinyModel)
        let prompt = tokenizer.encode("She said", addBOS: true, parseSpecialTokens: false)
        let answer = tokenizer.encode(" naïve Café ☕ 😀 “quoted” — 東京\ttab  two  spaces", addBOS: false, parseSpecialTokens: false)
        XCTAssertGreaterThan(answer.count, 20)
        var stream = TextStream(tokenizer: tokenizer, context: prompt)
        var chunks = answer.map { stream.append($0) }
        chunks.append(stream.flush())
        XCTAssertTrue(chunks.contains(""), "expected some byte-fallback tokens that complete later")
        let full = tokenizer.decode(prompt + answer, skipSpecialTokens: true)
        let promptText = tokenizer.decode(prompt, skipSpecialTokens: true)
        XCTAssertTrue(full.hasPrefix(promptText))
        XCTAssertEqual(chunks.joined(), String(full.dropFirst(promptText.count)))
        XCTAssertFalse(chunks.joined().contains("\u{FFFD}"))
    }
}
