import XCTest
@testable import MoEConvert

final class CalibrationDataTests: XCTestCase {
    func testPlainTextIsOneDocument() throws {
        XCTAssertEqual(try CalibrationData.parse("one line\n\nanother {not json}\n", name: "a.txt"),
                       [.text("one line\n\nanother {not json}\n")])
    }

    func testJSONLinesWithTextAndMessages() throws {
        let text = """
        {"text": "hello"}

        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]}
        """
        XCTAssertEqual(try CalibrationData.parse(text, name: "data.jsonl"), [
            .text("hello"),
            .chat([ChatTurn(role: "user", content: "hi"), ChatTurn(role: "assistant", content: "hello there")]),
        ])
        // Detected from content even without the extension.
        XCTAssertEqual(try CalibrationData.parse("{\"text\": \"x\"}\n", name: "data.txt"), [.text("x")])
    }

    func testEmptyAndBadFilesAreErrors() {
        for (text, name, message) in [
            ("", "a.txt", "calibration file a.txt is empty"),
            (" \n\n\t", "a.txt", "calibration file a.txt is empty"),
            ("{\"text\": \"\"}\n", "a.jsonl", "has no text"),
            ("{\"text\": \"a\"}\nnot json\n", "a.jsonl", "a.jsonl line 2 is not a JSON object"),
            ("{\"text\": 3}\n", "a.jsonl", "\"text\" is not a string"),
            ("{\"other\": 3}\n", "a.jsonl", "neither \"text\" nor \"messages\""),
            ("{\"messages\": [{\"role\": \"user\"}]}\n", "a.jsonl", "message 1 needs"),
        ] {
            XCTAssertThrowsError(try CalibrationData.parse(text, name: name), message) {
                XCTAssertTrue("\($0)".contains(message), "\($0) should contain \(message)")
            }
        }
    }
}
