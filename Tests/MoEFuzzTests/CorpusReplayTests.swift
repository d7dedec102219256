import Foundation
import MoEFuzz
import XCTest

/// Every seed in Tests/Fuzz/corpus and every saved reproducer in Tests/Fuzz/regressions goes
/// through its fuzz target: errors are the expected answer, a crash fails the whole run.
final class CorpusReplayTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz")

    func inputs(_ folder: String, _ target: FuzzTarget) -> [URL] {
        let directory = Self.root.appendingPathComponent("\(folder)/\(target.rawValue)")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { directory.appendingPathComponent($0) }
    }

    func testCorpusAndRegressionsReplay() throws {
        for target in FuzzTarget.allCases {
            let seeds = inputs("corpus", target)
            XCTAssertFalse(seeds.isEmpty, "no seeds for \(target.rawValue) in Tests/Fuzz/corpus")
            for url in seeds + inputs("regressions", target) {
                target.run(try Data(contentsOf: url))
            }
        }
    }

    /// The seeds are valid inputs, so each target's accepting paths are replayed too.
    func testSomeSeedsAreAccepted() throws {
        for target in FuzzTarget.allCases {
            let accepted = try inputs("corpus", target).filter { target.run(try Data(contentsOf: $0)) == nil }
            XCTAssertFalse(accepted.isEmpty, "every seed of \(target.rawValue) is rejected")
        }
    }

    /// A smoke run without libFuzzer: seeded mutations of every seed through its target (the
    /// libFuzzer run is tools/fuzz.sh). A crash stops the suite; rerun the mutation printed last
    /// with the same seed to reproduce it.
    func testMutatedSeedsDoNotCrash() throws {
        let perTarget = 400
        for target in FuzzTarget.allCases {
            let seeds = try inputs("corpus", target).map { try Data(contentsOf: $0) }
            var mutator = ByteMutator(seed: 0x6D6F_6570_6163_6B00 ^ UInt64(target.rawValue.utf8.count))
            for i in 0..<perTarget {
                var input = seeds[i % seeds.count]
                for _ in 0...(i % 3) { input = mutator.mutate(input) }
                target.run(input)
            }
        }
    }

    /// A hostile input gives an error, not a crash or a silent success.
    func testMalformedInputsAreRejected() {
        for target in FuzzTarget.allCases {
            for input in [Data(), Data([0xFF]), Data(repeating: 0x7B, count: 64)] {
                if target == .chatTemplate { continue }   // any bytes are some conversation
                XCTAssertNotNil(target.run(input), "\(target.rawValue) accepted \(Array(input.prefix(8)))")
            }
        }
    }
}
