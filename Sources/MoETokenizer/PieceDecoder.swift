/// Incremental form of SentencePiece's DecodeIds. Byte pieces are collected and turned into
/// UTF-8 as the library does (each structurally invalid byte becomes U+FFFD); a character is
/// emitted as soon as all of its bytes have arrived. Decoding a whole sequence at once is
/// `push` for each id followed by `finish`.
struct PieceDecoder: Sendable {
    private var pendingBytes: [UInt8] = []
    private var isBosWs = true
    private var bosWsSeen = false
    private var producedText = false

    /// Appends the text for `id` to `out`.
    mutating func push(_ id: Int32, model: SentencePieceTokenizer, into out: inout [UInt8]) {
        let vocab = model.vocab
        guard let type = vocab.type(id) else { return }  // out-of-range ids decode to nothing
        if type == .byte, let b = byteValue(ofPiece: vocab.pieces[Int(id)]) {
            pendingBytes.append(b)
            flushBytes(into: &out, final: false)
            return
        }
        flushBytes(into: &out, final: true)
        if bosWsSeen || producedText { isBosWs = false }
        let before = out.count
        bosWsSeen = appendPiece(id, type: type, model: model, into: &out)
        if out.count > before { producedText = true }
    }

    /// Emits whatever bytes are still pending (incomplete characters become U+FFFD).
    mutating func finish(into out: inout [UInt8]) {
        flushBytes(into: &out, final: true)
    }

    private mutating func appendPiece(_ id: Int32, type: PieceType, model: SentencePieceTokenizer,
                                      into out: inout [UInt8]) -> Bool {
        switch type {
        case .control:
            return false
        case .unknown:
            out.append(contentsOf: model.unkSurface)
            return false
        default:
            break
        }
        var piece = model.vocab.pieceBytes[Int(id)][...]
        var hasBosWs = false
        if isBosWs && (model.addDummyPrefix || model.removeExtraWhitespaces) {
            if piece.starts(with: spaceSymbol) {
                piece = piece.dropFirst(3)
                hasBosWs = true
            }
            // With extra whitespace removal every leading marker is dropped, not just one.
            if model.removeExtraWhitespaces { hasBosWs = false }
        }
        appendWithSpaces(piece, into: &out)
        return hasBosWs
    }

    /// Decodes pending bytes; unless `final`, stops before a character that may still complete.
    private mutating func flushBytes(into out: inout [UInt8], final: Bool) {
        if pendingBytes.isEmpty { return }
        let start = out.count
        var offset = 0
        let n = pendingBytes.count
        while offset < n {
            let lead = pendingBytes[offset]
            let need: Int
            switch lead {
            case 0x00...0x7F: need = 1
            case 0xC0...0xDF: need = 2
            case 0xE0...0xEF: need = 3
            case 0xF0...0xF7: need = 4
            default: need = 1  // never valid as a lead byte
            }
            if !final && n - offset < need { break }
            if let len = validUTF8Length(pendingBytes, offset) {
                out.append(contentsOf: pendingBytes[offset..<(offset + len)])
                offset += len
            } else {
                out.append(contentsOf: [0xEF, 0xBF, 0xBD])
                offset += 1
            }
        }
        pendingBytes.removeFirst(offset)
        if out.count > start { producedText = true }
    }
}

/// SentencePiece's DecodeUTF8 validity check at `offset`: the byte length of a well-formed
/// character, or nil (the library then consumes one byte as U+FFFD).
func validUTF8Length(_ b: [UInt8], _ offset: Int) -> Int? {
    let len = b.count - offset
    let c0 = UInt32(b[offset])
    @inline(__always) func trail(_ i: Int) -> Bool { b[offset + i] & 0xC0 == 0x80 }
    @inline(__always) func valid(_ cp: UInt32) -> Bool { cp < 0xD800 || (cp >= 0xE000 && cp <= 0x10FFFF) }
    if c0 < 0x80 { return 1 }
    if len >= 2 && c0 & 0xE0 == 0xC0 {
        let cp = (c0 & 0x1F) << 6 | UInt32(b[offset + 1] & 0x3F)
        return trail(1) && cp >= 0x80 && valid(cp) ? 2 : nil
    }
    if len >= 3 && c0 & 0xF0 == 0xE0 {
        let cp = (c0 & 0x0F) << 12 | UInt32(b[offset + 1] & 0x3F) << 6 | UInt32(b[offset + 2] & 0x3F)
        return trail(1) && trail(2) && cp >= 0x800 && valid(cp) ? 3 : nil
    }
    if len >= 4 && c0 & 0xF8 == 0xF0 {
        let cp = (c0 & 0x07) << 18 | UInt32(b[offset + 1] & 0x3F) << 12
            | UInt32(b[offset + 2] & 0x3F) << 6 | UInt32(b[offset + 3] & 0x3F)
        return trail(1) && trail(2) && trail(3) && cp >= 0x10000 && valid(cp) ? 4 : nil
    }
    return nil
}

/// Appends a piece's bytes with each U+2581 (the space marker) turned back into a space.
func appendWithSpaces(_ piece: ArraySlice<UInt8>, into out: inout [UInt8]) {
    var i = piece.startIndex
    while i < piece.endIndex {
        if piece[i] == 0xE2, i + 2 < piece.endIndex, piece[i + 1] == 0x96, piece[i + 2] == 0x81 {
            out.append(0x20)
            i += 3
        } else {
            out.append(piece[i])
            i += 1
        }
    }
}
