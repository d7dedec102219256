import Foundation

/// Piece types as stored in the model file.
public enum PieceType: UInt8, Sendable {
    case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

/// The piece table of a SentencePiece model with the lookups the encoder and decoder need.
struct Vocabulary: Sendable {
    let pieces: [String]
    let pieceBytes: [[UInt8]]
    let scores: [Float]
    let types: [PieceType]
    /// NORMAL, USER_DEFINED and UNUSED pieces (SentencePiece's `pieces_`).
    let normal: ByteTrie
    /// CONTROL, UNKNOWN and BYTE pieces (SentencePiece's `reserved_id_map_`).
    let reserved: ByteTrie
    /// USER_DEFINED pieces, matched whole before segmentation and left unnormalized.
    let userDefined: ByteTrie
    let unkID: Int32
    let byteFallback: Bool
    /// Id used for each byte when an unknown piece falls back to bytes.
    let byteIDs: [Int32]

    init(proto: Sentencepiece_ModelProto) throws {
        let protoPieces = proto.pieces
        guard !protoPieces.isEmpty else { throw TokenizerError.invalidModel("the model has no pieces") }
        guard protoPieces.count < Int(Int32.max) else { throw TokenizerError.invalidModel("too many pieces") }
        byteFallback = proto.trainerSpec.byteFallback
        var pieces: [String] = [], bytes: [[UInt8]] = [], scores: [Float] = [], types: [PieceType] = []
        pieces.reserveCapacity(protoPieces.count)
        var normalEntries: [(key: [UInt8], value: Int32)] = [], userEntries: [(key: [UInt8], value: Int32)] = []
        var reservedEntries: [(key: [UInt8], value: Int32)] = []
        var unk: Int32 = -1
        var bytesFound = [Bool](repeating: false, count: 256)
        for (i, sp) in protoPieces.enumerated() {
            let id = Int32(i)
            let b = Array(sp.piece.utf8)
            guard !b.isEmpty else { throw TokenizerError.invalidModel("piece \(i) is empty") }
            guard let type = PieceType(rawValue: UInt8(truncatingIfNeeded: sp.type.rawValue)) else {
                throw TokenizerError.invalidModel("piece \(i) has unknown type \(sp.type.rawValue)")
            }
            switch type {
            case .normal, .userDefined, .unused:
                normalEntries.append((b, id))
                if type == .userDefined { userEntries.append((b, id)) }
            case .unknown, .control, .byte:
                reservedEntries.append((b, id))
                if type == .unknown {
                    guard unk < 0 else { throw TokenizerError.invalidModel("more than one unknown piece") }
                    unk = id
                }
                if type == .byte {
                    guard byteFallback else {
                        throw TokenizerError.invalidModel("byte piece \(sp.piece) found although byte_fallback is off")
                    }
                    guard let value = byteValue(ofPiece: sp.piece) else {
                        throw TokenizerError.invalidModel("byte piece \(sp.piece) is malformed")
                    }
                    bytesFound[Int(value)] = true
                }
            }
            pieces.append(sp.piece); bytes.append(b); scores.append(sp.score); types.append(type)
        }
        var duplicates: [Int] = []
        let normal = ByteTrie(entries: normalEntries, duplicates: &duplicates)
        if let d = duplicates.first {
            throw TokenizerError.invalidModel("piece \(pieces[Int(normalEntries[d].value)]) is defined twice")
        }
        let reserved = ByteTrie(entries: reservedEntries, duplicates: &duplicates)
        if let d = duplicates.first {
            throw TokenizerError.invalidModel("piece \(pieces[Int(reservedEntries[d].value)]) is defined twice")
        }
        let userDefined = ByteTrie(entries: userEntries)
        guard unk >= 0 else { throw TokenizerError.invalidModel("the model defines no unknown piece") }
        if byteFallback && bytesFound.contains(false) {
            throw TokenizerError.invalidModel("byte_fallback is on but not all 256 byte pieces exist")
        }
        self.pieces = pieces; self.pieceBytes = bytes; self.scores = scores; self.types = types
        self.normal = normal; self.reserved = reserved; self.userDefined = userDefined
        self.unkID = unk
        byteIDs = (0...255).map { b in
            let name = Array(bytePieceName(UInt8(b)).utf8)
            return reserved.lookup(name) ?? normal.lookup(name) ?? unk
        }
    }

    var count: Int { pieces.count }

    /// SentencePiece's PieceToId: reserved pieces first, then normal ones, else the unknown id.
    func id<C: Collection>(of piece: C) -> Int32 where C.Element == UInt8 {
        reserved.lookup(piece) ?? normal.lookup(piece) ?? unkID
    }

    func type(_ id: Int32) -> PieceType? {
        id >= 0 && Int(id) < types.count ? types[Int(id)] : nil
    }
}

func bytePieceName(_ b: UInt8) -> String {
    let hex = Array("0123456789ABCDEF")
    return "<0x\(hex[Int(b >> 4)])\(hex[Int(b & 15)])>"
}

/// Parses `<0xXX>` (upper-case hex, as SentencePiece writes it) into its byte value.
func byteValue(ofPiece piece: String) -> UInt8? {
    let u = Array(piece.utf8)
    guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
    func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }
    guard let hi = hex(u[3]), let lo = hex(u[4]) else { return nil }
    return hi << 4 | lo
}
