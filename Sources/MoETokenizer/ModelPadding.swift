import Foundation
import SwiftProtobuf

extension SentencePieceTokenizer {
    /// `modelData` (a SentencePiece model) with normal pieces appended until it has `count`, so
    /// that every id of a model whose vocabulary is larger than its tokenizer's decodes to some
    /// text. `moepack synth` uses it when a preset's vocabulary (bench-moe's 32000) outgrows the
    /// tokenizer it copies (the tiny model's 3072): otherwise most generated ids would decode to
    /// nothing, and neither `run` nor a streaming client would see the tokens arrive.
    ///
    /// The new pieces are "▁⁂" and a base-36 number, scored below every existing piece. The
    /// existing pieces keep their ids. Since neither "▁⁂" nor "⁂" followed by digits is added, BPE
    /// merges can never reach the new pieces, and a unigram model could only choose them for text
    /// that contains "⁂": ordinary text encodes as before. Returns `modelData` unchanged when it
    /// already has `count` pieces or more.
    public static func padding(_ modelData: Data, toPieces count: Int) throws -> Data {
        var proto: Sentencepiece_ModelProto
        do {
            proto = try Sentencepiece_ModelProto(serializedBytes: modelData)
        } catch {
            throw TokenizerError.invalidModel("cannot parse the model protobuf (\(modelData.count) bytes): \(error)")
        }
        guard proto.pieces.count < count else { return modelData }
        let existing = Set(proto.pieces.map(\.piece))
        let floor = (proto.pieces.map(\.score).min() ?? 0) - 1
        var next = 0
        while proto.pieces.count < count {
            let name = "\u{2581}\u{2042}" + String(next, radix: 36)
            next += 1
            guard !existing.contains(name) else { continue }
            var piece = Sentencepiece_ModelProto.SentencePiece()
            piece.piece = name
            piece.score = floor
            piece.type = .normal
            proto.pieces.append(piece)
        }
        if proto.hasTrainerSpec { proto.trainerSpec.vocabSize = Int32(count) }
        return try proto.serializedData()
    }
}
