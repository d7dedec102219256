import Foundation
import SwiftProtobuf

/// A SentencePiece tokenizer (BPE or unigram) that encodes and decodes like the `sentencepiece`
/// library: same normalization, segmentation, byte fallback and decoding.
public final class SentencePieceTokenizer: Sendable {
    public enum ModelType: String, Sendable { case bpe, unigram }

    public let modelType: ModelType
    let vocab: Vocabulary
    let normalizer: Normalizer
    let denormalizer: Normalizer?
    let unigram: UnigramModel?
    let unkSurface: [UInt8]
    let addDummyPrefix: Bool
    let removeExtraWhitespaces: Bool

    public let bosID: Int32?
    public let eosID: Int32?
    public let padID: Int32?
    public let unkID: Int32?

    public init(modelData: Data) throws {
        let proto: Sentencepiece_ModelProto
        do {
            proto = try Sentencepiece_ModelProto(serializedBytes: modelData)
        } catch {
            throw TokenizerError.invalidModel("cannot parse the model protobuf (\(modelData.count) bytes): \(error)")
        }
        let trainer = proto.trainerSpec
        switch trainer.modelType {
        case .bpe: modelType = .bpe
        case .unigram: modelType = .unigram
        case .word, .char:
            throw TokenizerError.unsupportedModel("model_type \(trainer.modelType) (only BPE and UNIGRAM are supported)")
        }
        vocab = try Vocabulary(proto: proto)
        normalizer = try Normalizer(spec: proto.normalizerSpec,
                                    treatWhitespaceAsSuffix: trainer.treatWhitespaceAsSuffix,
                                    userDefined: vocab.userDefined)
        if proto.hasDenormalizerSpec && !proto.denormalizerSpec.precompiledCharsmap.isEmpty {
            denormalizer = try Normalizer(spec: proto.denormalizerSpec, treatWhitespaceAsSuffix: false, userDefined: nil)
        } else {
            denormalizer = nil
        }
        unigram = modelType == .unigram ? UnigramModel(vocab: vocab) : nil
        unkSurface = Array((trainer.hasUnkSurface ? trainer.unkSurface : " \u{2047} ").utf8)
        addDummyPrefix = proto.normalizerSpec.addDummyPrefix
        removeExtraWhitespaces = proto.normalizerSpec.removeExtraWhitespaces

        // As the library: an id only counts if the named piece exists with the right type.
        let v = vocab
        func special(_ name: String, _ type: PieceType) -> Int32? {
            let id = v.id(of: Array(name.utf8))
            return v.type(id) == type ? id : nil
        }
        bosID = special(trainer.bosPiece, .control)
        eosID = special(trainer.eosPiece, .control)
        padID = special(trainer.padPiece, .control)
        unkID = special(trainer.unkPiece, .unknown)
    }

    public convenience init(modelURL: URL) throws {
        let data: Data
        do {
            data = try Data(contentsOf: modelURL)
        } catch {
            throw TokenizerError.fileNotFound("\(modelURL.path): \(error.localizedDescription)")
        }
        try self.init(modelData: data)
    }

    public var vocabularySize: Int { vocab.count }

    /// The piece string for `id`, or an empty string when `id` is out of range.
    public func piece(for id: Int32) -> String {
        vocab.type(id) == nil ? "" : vocab.pieces[Int(id)]
    }

    /// The id of `piece` (the unknown id when it is not in the vocabulary), like PieceToId.
    public func id(for piece: String) -> Int32 {
        vocab.id(of: Array(piece.utf8))
    }

    public func pieceType(for id: Int32) -> PieceType? { vocab.type(id) }

    /// The bytes one token stands for wherever it appears in a text: a byte-fallback piece its
    /// byte, any other piece its text with U+2581 as a space (also at the start of a text, where
    /// `decode` drops it), a control piece nothing. Empty for an id out of range.
    public func bytes(of id: Int32) -> [UInt8] {
        switch vocab.type(id) {
        case nil, .control?: return []
        case .unknown?: return unkSurface
        case .byte?: return byteValue(ofPiece: vocab.pieces[Int(id)]).map { [$0] } ?? []
        default:
            var out: [UInt8] = []
            appendWithSpaces(vocab.pieceBytes[Int(id)][...], into: &out)
            return out
        }
    }

    public func score(for id: Int32) -> Float? {
        vocab.type(id) == nil ? nil : vocab.scores[Int(id)]
    }

    /// The normalized text as the model sees it (U+2581 for spaces, dummy prefix added).
    public func normalize(_ text: String) -> String {
        String(decoding: normalizer.normalize(text), as: UTF8.self)
    }

    /// Encodes `text` into piece ids. Special-token strings are not treated specially.
    public func encode(_ text: String) -> [Int32] {
        let normalized = normalizer.normalize(text)
        return normalized.withUnsafeBufferPointer { buf -> [Int32] in
            let segments: [Segment]
            if let unigram {
                segments = unigram.encode(buf, vocab: vocab)
            } else {
                segments = BPEModel.encode(buf, vocab: vocab)
            }
            return ids(for: segments, in: buf)
        }
    }

    /// The pieces `encode` produces, as strings.
    public func encodeAsPieces(_ text: String) -> [String] {
        encode(text).map { piece(for: $0) }
    }

    /// The library's PopulateSentencePieceText: unknown pieces become byte pieces when byte
    /// fallback is on; otherwise runs of unknown pieces collapse into one unknown id.
    private func ids(for segments: [Segment], in text: UnsafeBufferPointer<UInt8>) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(segments.count)
        var prevUnknown = false
        for s in segments {
            let type = vocab.type(s.id)
            let isUnknown = type == .unknown
            if type == .control {
                out.append(s.id)
            } else if isUnknown && vocab.byteFallback {
                for i in s.start..<(s.start + s.length) { out.append(vocab.byteIDs[Int(text[i])]) }
            } else if !(isUnknown && prevUnknown) {
                out.append(s.id)
            }
            prevUnknown = isUnknown
        }
        return out
    }

    /// Decodes ids into text like DecodeIds. Out-of-range ids are skipped.
    public func decode(_ ids: [Int32]) -> String {
        var state = PieceDecoder()
        var bytes: [UInt8] = []
        for id in ids { state.push(id, model: self, into: &bytes) }
        state.finish(into: &bytes)
        if let denormalizer {
            bytes = bytes.withUnsafeBufferPointer { denormalizer.normalize($0) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
