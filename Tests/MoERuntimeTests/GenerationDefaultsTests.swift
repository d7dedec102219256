import Foundation
import MoEFormat
@testable import MoERuntime
import XCTest

/// generation_config.json's sampling fields, read as transformers reads them.
final class GenerationDefaultsTests: XCTestCase {
    func testHubStyleSamplingConfig() throws {
        // The shape of ERNIE 4.5's published generation_config.json.
        let json: [String: Any] = ["do_sample": true, "top_p": 0.8, "temperature": 0.8, "repetition_penalty": 1.0,
                                   "frequency_penalty": 0.0, "presence_penalty": 0.0, "bos_token_id": 1, "eos_token_id": 2]
        let defaults = try GenerationDefaults(json: json, source: "generation_config.json")
        XCTAssertEqual(defaults, GenerationDefaults(doSample: true, temperature: 0.8, topP: 0.8, topK: nil, repetitionPenalty: 1))
        let sampling = defaults.transformersSampling
        XCTAssertEqual(sampling.temperature, 0.8)
        XCTAssertEqual(sampling.topP, 0.8)
        XCTAssertEqual(sampling.topK, 50, "transformers' own top_k when sampling and the file sets none")
        XCTAssertFalse(sampling.isGreedy)
    }

    func testGreedyUnlessDoSample() throws {
        for json: [String: Any] in [["do_sample": false, "temperature": 0.7], ["temperature": 0.7, "repetition_penalty": 1.2]] {
            let sampling = try GenerationDefaults(json: json, source: "g").transformersSampling
            XCTAssertTrue(sampling.isGreedy, "\(json)")
            XCTAssertEqual(sampling.repetitionPenalty, (json["repetition_penalty"] as? Double) ?? 1)
        }
    }

    func testInvalidValuesAreRefusedByName() {
        for (key, value) in [("temperature", -1.0), ("top_p", 0.0), ("top_p", 1.5), ("top_k", 2.5), ("repetition_penalty", 0.0)] as [(String, Any)] {
            XCTAssertThrowsError(try GenerationDefaults(json: [key: value], source: "g")) { error in
                XCTAssertTrue("\(error)".contains(key), "\(error)")
            }
        }
        XCTAssertThrowsError(try GenerationDefaults(json: ["do_sample": "yes"], source: "g"))
    }
}
