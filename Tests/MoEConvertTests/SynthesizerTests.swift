import Foundation
import MoEConvert
import MoEFormat
import MoERuntime
import MoETestSupport
import MoETokenizer
import XCTest

final class SynthesizerTests: XCTestCase {
    func testShardedSynthCheckpointLoadsAndIsDeterministic() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var synth = Synthesizer(configJSON: ModelPreset.tiny.configJSON)
        synth.seed = 7
        synth.shardBytes = 256 << 10 // force several shards
        let a = dir.appendingPathComponent("a"), b = dir.appendingPathComponent("b")
        try synth.write(to: a)
        try synth.write(to: b)

        let checkpoint = try Checkpoint(directory: a)
        XCTAssertGreaterThan(checkpoint.shards.count, 1)
        XCTAssertEqual(Set(checkpoint.tensorNames), Set(ModelLayout(config: ModelPreset.tiny.config).tensors.map(\.name)))
        for shard in try FileManager.default.contentsOfDirectory(atPath: a.path) {
            XCTAssertEqual(FileManager.default.contents(atPath: a.appendingPathComponent(shard).path),
                           FileManager.default.contents(atPath: b.appendingPathComponent(shard).path), shard)
        }
        // Weights have the requested spread; norms are ones.
        let q = try checkpoint.floats("model.layers.0.self_attn.q_proj.weight")
        let std = (q.reduce(0) { $0 + $1 * $1 } / Float(q.count)).squareRoot()
        XCTAssertEqual(std, 0.02, accuracy: 0.002)
        XCTAssertEqual(Set(try checkpoint.floats("model.norm.weight")), [1])

        let model = try ErnieModel(weights: CheckpointWeights(checkpoint: checkpoint))
        let logits = try model.logits([1, 2, 3])
        XCTAssertTrue(logits.allSatisfy(\.isFinite))
    }

    /// The copied tokenizer is padded to the model's vocabulary, so every id decodes to text.
    func testTokenizerIsPaddedToTheVocabulary() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var json = ModelPreset.tiny.configJSON
        json["vocab_size"] = 4000
        var synth = Synthesizer(configJSON: json)
        synth.extraFiles = [Fixtures.tinyModel.appendingPathComponent("tokenizer.model")]
        let out = dir.appendingPathComponent("m")
        try synth.write(to: out)
        let tokenizer = try SentencePieceTokenizer(modelURL: out.appendingPathComponent("tokenizer.model"))
        XCTAssertEqual(tokenizer.vocabularySize, 4000)
        XCTAssertFalse(tokenizer.decode([3999]).isEmpty)
    }

    func testRefusesExistingOutput() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertThrowsError(try Synthesizer(configJSON: ModelPreset.tiny.configJSON).write(to: dir)) { error in
            XCTAssertEqual("\(error)", "\(dir.path) already exists")
        }
    }

    func testRealModelPresetsHaveTheirPublishedSizes() {
        let moe = ModelLayout(config: ModelPreset.ernie21BA3B.config).parameterCounts
        XCTAssertEqual(Double(moe.total) / 1e9, 21.8, accuracy: 0.1)
        XCTAssertEqual(Double(moe.activePerToken) / 1e9, 3.0, accuracy: 0.4)
        let dense = ModelLayout(config: ModelPreset.ernie03B.config).parameterCounts
        XCTAssertEqual(Double(dense.total) / 1e9, 0.36, accuracy: 0.01)
    }
}
