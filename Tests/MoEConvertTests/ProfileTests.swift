import Foundation
import MoEConvert
import MoEFormat
import MoETestSupport
import XCTest

final class ProfileTests: XCTestCase {
    static let profilesDirectory = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("profiles")

    func testShippedProfilesMatchTheFilesAndParse() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.profilesDirectory.path).filter { $0.hasSuffix(".toml") }
        XCTAssertEqual(Set(files.map { String($0.dropLast(5)) }), Set(ShippedProfiles.all.keys),
                       "profiles/ and ShippedProfiles.swift differ: run tools/embed_profiles.py")
        for file in files {
            let name = String(file.dropLast(5))
            let text = try String(contentsOf: Self.profilesDirectory.appendingPathComponent(file), encoding: .utf8)
            XCTAssertEqual(ShippedProfiles.all[name], text, "\(file) changed: run tools/embed_profiles.py")
            let profile = try Profile.load(name)
            XCTAssertEqual(profile.name, name)
        }
    }

    func testShippedProfileContents() throws {
        let w4 = try Profile.load("wint4")
        XCTAssertEqual(w4.formats[.routedExperts], .q4g64)
        XCTAssertEqual(w4.formats[.attention], .int8)
        XCTAssertEqual(w4.formats[.embeddings], .int8)
        XCTAssertEqual(w4.compression, .zstd)
        XCTAssertNil(w4.prune)
        XCTAssertEqual(w4.format(for: .router, cols: 64, is2D: true), .f32)
        XCTAssertEqual(w4.format(for: .routedExperts, cols: 128, is2D: true), .q4g64)
        XCTAssertEqual(w4.format(for: .routedExperts, cols: 160, is2D: true), .q4g32, "160 is a multiple of 32, not 64")
        var old = w4
        old.formats[.routedExperts] = .int4g64
        XCTAssertEqual(old.format(for: .routedExperts, cols: 160, is2D: true), .int4g32, "the same family: 15 levels")
        XCTAssertEqual(w4.format(for: .routedExperts, cols: 48, is2D: true), .int8, "no int4 group divides 48")
        var asym = w4
        asym.formats[.routedExperts] = .int4g128a
        XCTAssertEqual(asym.format(for: .routedExperts, cols: 192, is2D: true), .int4g64a)
        var grid = w4
        grid.formats[.routedExperts] = .nl4g32
        XCTAssertEqual(grid.format(for: .routedExperts, cols: 160, is2D: true), .nl4g32)
        XCTAssertEqual(grid.format(for: .routedExperts, cols: 48, is2D: true), .int8, "nl4 has only groups of 32")
        let all4 = try Profile.load("wint4-all")
        for linear in [TensorClass.attention, .denseMLP, .sharedExperts, .routedExperts] {
            XCTAssertEqual(all4.formats[linear], .q4g64, "\(linear)")
        }
        XCTAssertEqual(all4.formats[.embeddings], .int8)
        XCTAssertEqual(all4.formats[.lmHead], .int8)
        XCTAssertEqual(all4.format(for: .router, cols: 64, is2D: true), .f32)
        let pruned = try Profile.load("wint4-prune25")
        XCTAssertEqual(pruned.prune, PruneSettings(ratio: 0.25, criterion: .reap, budget: .perLayer))
        XCTAssertEqual(pruned.stages, [.prune, .quantize, .pack])
        let f32 = try Profile.load("f32")
        XCTAssertEqual(f32.compression, .none)
        XCTAssertTrue(f32.formats.values.allSatisfy { $0 == .f32 })
    }

    func testLoadsAProfileFile() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("mine.toml")
        let text = ShippedProfiles.all["wint8"]!.replacingOccurrences(of: "routed_experts = \"int8\"", with: "routed_experts = \"int4g32a\"")
        try text.write(to: url, atomically: true, encoding: .utf8)
        let profile = try Profile.load(url.path)
        XCTAssertEqual(profile.formats[.routedExperts], .int4g32a)
        XCTAssertEqual(profile.source, text)
    }

    func assertRejects(_ edit: (String) -> String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        let text = edit(ShippedProfiles.all["wint4"]!)
        XCTAssertThrowsError(try Profile(toml: text, origin: "p.toml"), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(expected), "\(error)", file: file, line: line)
        }
    }

    func testRejectsUnknownKeysAndValues() {
        assertRejects({ "speed = 3\n" + $0 }, "unknown key \"speed\"")
        assertRejects({ $0.replacingOccurrences(of: "[formats]", with: "[formats]\nrouted_expert = \"int8\"") }, "unknown key \"formats.routed_expert\"")
        assertRejects({ $0.replacingOccurrences(of: "routed_experts = \"q4g64\"", with: "routed_experts = \"int3\"") },
                      "unknown value \"int3\" for formats.routed_experts")
        assertRejects({ $0.replacingOccurrences(of: "compression = \"zstd\"", with: "compression = \"lz4\"") },
                      "unknown value \"lz4\" for pack.compression")
        assertRejects({ $0.replacingOccurrences(of: "[pack]", with: "[pack]\nlevel = 3") }, "unknown key \"pack.level\"")
        assertRejects({ $0.replacingOccurrences(of: "\"quantize\", \"pack\"", with: "\"quantize\", \"squash\", \"pack\"") },
                      "unknown stage \"squash\"")
        assertRejects({ $0 + "\n[extra]\nx = 1\n" }, "unknown key \"extra\"")
    }

    func testRouterAndNormsAreNeverQuantized() {
        assertRejects({ $0.replacingOccurrences(of: "[formats]", with: "[formats]\nrouter = \"int8\"") },
                      "formats.router = \"int8\": router tensors are never quantized")
        assertRejects({ $0.replacingOccurrences(of: "[formats]", with: "[formats]\nnorms = \"bf16\"") }, "norms tensors are never quantized")
        // Spelling out f32 is allowed.
        XCTAssertNoThrow(try Profile(toml: ShippedProfiles.all["wint4"]!.replacingOccurrences(of: "[formats]", with: "[formats]\nrouter = \"f32\""),
                                     origin: "p.toml"))
    }

    func testRejectsStructuralMistakes() {
        assertRejects({ $0.replacingOccurrences(of: "embeddings = \"int8\"\n", with: "") }, "missing key \"formats.embeddings\"")
        assertRejects({ $0.replacingOccurrences(of: "[\"quantize\", \"pack\"]", with: "[\"pack\", \"quantize\"]") }, "stages must be")
        assertRejects({ $0.replacingOccurrences(of: "[\"quantize\", \"pack\"]", with: "[\"prune\", \"quantize\", \"pack\"]") },
                      "a \"prune\" stage needs a [prune] table")
        assertRejects({ $0.replacingOccurrences(of: "zstd_level = 3", with: "zstd_level = 40") }, "pack.zstd_level 40 is outside")
        assertRejects({ $0.replacingOccurrences(of: "zstd_level = 3", with: "zstd_level = \"high\"") }, "pack.zstd_level must be an integer")
        assertRejects({ $0.replacingOccurrences(of: "int4_fallback = \"int8\"", with: "int4_fallback = \"int4g32\"") },
                      "int4_fallback must not be an int4 format")
        assertRejects({ _ in "name = [" }, "p.toml: invalid TOML at line 1")
        XCTAssertThrowsError(try Profile.load("wint5")) { XCTAssertTrue("\($0)".contains("unknown profile \"wint5\"")) }
        XCTAssertThrowsError(try Profile.load("/nonexistent/p.toml")) { XCTAssertTrue("\($0)".contains("cannot read profile file")) }
    }
}
