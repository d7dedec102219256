import Foundation

/// A byte-level BPE tokenizer read from `tokenizer.json` that encodes and decodes like the
/// `tokenizers` library: added tokens first (raw, then normalized), NFC, the split regex,
/// byte-level symbols, merges by rank; decoding maps pieces back to bytes (invalid UTF-8
/// becomes U+FFFD, as the library's lossy decode).
public final class ByteLevelBPETokenizer: Sendable {
    let model: BPEMerges
    let pattern: SplitPattern
    let nfc: Bool
    let addPrefixSpace: Bool
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    /// The bytes each id decodes to (empty for ids that name nothing).
    let decodedBytes: [[UInt8]]
    let pieceText: [String?]
    let special: Set<Int32>
    let idOfToken: [String: Int32]
    /// Ids the post-processor adds around a single sequence (Llama-3's `<|begin_of_text|>`).
    public let prefixIDs: [Int32]
    public let suffixIDs: [Int32]
    public let vocabularySize: Int
    /// The added tokens, by id.
    public let addedTokens: [Int32: String]

    public init(data: Data) throws {
        let file = try TokenizerJSON(data: data)
        guard let pattern = file.pattern else { throw TokenizerError.unsupportedModel("tokenizer.json: no split pattern") }
        self.pattern = pattern
        nfc = file.nfc
        addPrefixSpace = file.addPrefixSpace

        var maxID: Int32 = -1
        for id in file.vocab.values { maxID = max(maxID, id) }
        for t in file.added { maxID = max(maxID, t.id) }
        guard maxID < 4_000_000 else { throw TokenizerError.invalidModel("tokenizer.json: id \(maxID) is out of range") }
        let count = Int(maxID) + 1
        vocabularySize = count

        var text = [String?](repeating: nil, count: count)
        var pieceByBytes: [[UInt8]: Int32] = [:]
        pieceByBytes.reserveCapacity(file.vocab.count)
        for (piece, id) in file.vocab {
            text[Int(id)] = piece
            if let b = ByteLevel.bytes(ofPiece: piece) { pieceByBytes[b] = id }
        }
        var tokens = file.vocab
        var added: [Int32: String] = [:]
        for t in file.added {
            // The library keeps a normalized token's content normalized (and decodes that).
            let content = t.normalized && file.nfc ? NFC.normalize(t.content) : t.content
            text[Int(t.id)] = content
            tokens[content] = t.id
            added[t.id] = content
        }
        pieceText = text
        idOfToken = tokens
        addedTokens = added
        special = Set(file.added.filter(\.special).map(\.id))
        // The ByteLevel decoder: a piece's characters back to bytes, or its UTF-8 when one is
        // outside the alphabet (added tokens such as "<|im_end|>" are plain ASCII and map to themselves).
        decodedBytes = text.map { t in t.map { ByteLevel.bytes(ofPiece: $0) ?? Array($0.utf8) } ?? [] }

        var byteID = [Int32](repeating: -1, count: 256)
        for b in 0..<256 { byteID[b] = file.vocab[String(ByteLevel.character[b])] ?? -1 }
        var merges: [UInt64: (rank: Int32, id: Int32)] = [:]
        merges.reserveCapacity(file.merges.count)
        for (rank, pair) in file.merges.enumerated() {
            guard let a = file.vocab[pair.0], let b = file.vocab[pair.1], let m = file.vocab[pair.0 + pair.1] else {
                throw TokenizerError.invalidModel("tokenizer.json: merge \(rank) (\(pair.0.debugDescription) \(pair.1.debugDescription)) names a piece not in the vocabulary")
            }
            let key = BPEMerges.key(a, b)
            if merges[key] == nil { merges[key] = (Int32(rank), m) }
        }
        model = BPEMerges(byteID: byteID, merges: merges, pieceByBytes: pieceByBytes,
                          ignoreMerges: file.ignoreMerges, unkID: file.unkToken.flatMap { file.vocab[$0] })

        let nfc = file.nfc
        rawMatcher = AddedTokenMatcher(file.added.filter { !$0.normalized }, contentOf: \.content)
        normalizedMatcher = AddedTokenMatcher(file.added.filter(\.normalized)) { nfc ? NFC.normalize($0.content) : $0.content }
        func ids(_ names: [String]) throws -> [Int32] {
            try names.map { name in
                guard let id = tokens[name] else { throw TokenizerError.invalidModel("tokenizer.json: post-processor token \(name) is not in the vocabulary") }
                return id
            }
        }
        prefixIDs = try ids(file.prefixTokens)
        suffixIDs = try ids(file.suffixTokens)
    }

    public convenience init(url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TokenizerError.fileNotFound("\(url.path): \(error.localizedDescription)")
        }
        try self.init(data: data)
    }

    /// The id of a piece or added token string.
    public func id(for token: String) -> Int32? { idOfToken[token] }

    /// The piece (byte-level characters) or added token text of `id`.
    public func piece(for id: Int32) -> String? {
        id >= 0 && Int(id) < pieceText.count ? pieceText[Int(id)] : nil
    }

    public func isSpecial(_ id: Int32) -> Bool { special.contains(id) }

    /// The bytes `id` decodes to (empty for an id that names nothing).
    public func bytes(of id: Int32) -> [UInt8] {
        id >= 0 && Int(id) < decodedBytes.count ? decodedBytes[Int(id)] : []
    }

    /// Encodes `text` as the library's `encode(text, add_special_tokens=False)`. Without
    /// `parseSpecialTokens` special tokens are plain text (`encode_special_tokens`); added tokens
    /// that are not special are still matched, as the library does.
    public func encode(_ text: String, parseSpecialTokens: Bool = true) -> [Int32] {
        var out: [Int32] = []
        var cache: [ArraySlice<UInt8>: Range<Int>] = [:]
        var cached: [Int32] = []
        let raw = Array(text.utf8)
        for piece in rawMatcher.split(raw, skipSpecial: !parseSpecialTokens) {
            switch piece {
            case .token(let id): out.append(id)
            case .text(let range):
                var segment = String(decoding: raw[range], as: UTF8.self)
                if nfc && !raw[range].allSatisfy({ $0 < 0x80 }) { segment = NFC.normalize(segment) }
                let normalized = Array(segment.utf8)
                for inner in normalizedMatcher.split(normalized, skipSpecial: !parseSpecialTokens) {
                    switch inner {
                    case .token(let id): out.append(id)
                    case .text(let r):
                        encodePlain(normalized[r], into: &out, cache: &cache, cached: &cached)
                    }
                }
            }
        }
        return out
    }

    /// Pre-tokenizes normalized text with the split pattern and runs BPE on each piece.
    private func encodePlain(_ bytes: ArraySlice<UInt8>, into out: inout [Int32],
                             cache: inout [ArraySlice<UInt8>: Range<Int>], cached: inout [Int32]) {
        var text = Array(bytes)
        if addPrefixSpace && text.first != 0x20 { text.insert(0x20, at: 0) }
        var scalars: [Unicode.Scalar] = []
        var offsets: [Int] = []
        scalars.reserveCapacity(text.count)
        offsets.reserveCapacity(text.count + 1)
        var at = 0
        for s in String(decoding: text, as: UTF8.self).unicodeScalars {
            scalars.append(s)
            offsets.append(at)
            at += UTF8.width(s)
        }
        offsets.append(at)
        for r in pattern.split(scalars) {
            let word = text[offsets[r.lowerBound]..<offsets[r.upperBound]]
            if let hit = cache[word] {
                out += cached[hit]
                continue
            }
            let start = out.count
            model.encode(word, into: &out)
            if cache.count < 100_000 {
                let at = cached.count
                cached += out[start...]
                cache[word] = at..<cached.count
            }
        }
    }

    /// Decodes like the library's `decode(ids, skip_special_tokens:)`: ids that name nothing are
    /// dropped, special tokens too when asked, the rest become bytes and then text.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = false) -> String {
        var bytes: [UInt8] = []
        for id in ids where !(skipSpecialTokens && special.contains(id)) {
            bytes += self.bytes(of: id)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
