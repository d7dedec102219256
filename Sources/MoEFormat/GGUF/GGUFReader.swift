import Foundation

/// Reads a GGUF v3 file's header, metadata and tensor table (every length and offset checked
/// against the file), enough to say what an exported file holds and to test the writer.
/// Metadata values of types moepack does not write are read and kept as `nil`.
public struct GGUFReader: Sendable {
    public struct Tensor: Sendable, Equatable {
        public var info: GGUFTensorInfo
        /// Absolute offset of the data in the file.
        public var offset: Int
        public var byteCount: Int
    }

    public let version: UInt32
    public let alignment: Int
    public let metadata: [String: GGUFValue]
    /// Keys in file order (metadata values of other types are listed here but absent above).
    public let keys: [String]
    public let tensors: [Tensor]

    public init(data: Data, name: String = "gguf") throws {
        // Indexed from 0 (a slice of another Data is re-based); mapped data is not copied.
        var r = Cursor(bytes: data.startIndex == 0 ? data : Data(data), name: name)
        guard try r.take(4) == Array("GGUF".utf8) else { throw FormatError("\(name): not a GGUF file (no GGUF magic)") }
        version = try r.u32()
        guard version == 3 else { throw FormatError("\(name): GGUF version \(version) is not supported (only 3)") }
        let tensorCount = try r.u64(), kvCount = try r.u64()
        guard tensorCount < 1 << 24, kvCount < 1 << 24 else { throw FormatError("\(name): implausible GGUF counts") }
        var metadata: [String: GGUFValue] = [:], keys: [String] = []
        var alignment = 32
        for _ in 0..<kvCount {
            let key = try r.string()
            let type = try r.u32()
            let value = try r.value(type: type)
            keys.append(key)
            if let value { metadata[key] = value }
            if key == "general.alignment" {
                guard case .uint32(let a)? = value, a > 0, a & (a - 1) == 0 else {
                    throw FormatError("\(name): general.alignment is not a power of two")
                }
                alignment = Int(a)
            }
        }
        var infos: [(GGUFTensorInfo, Int)] = []
        for _ in 0..<tensorCount {
            let tname = try r.string()
            let dims = try r.u32()
            guard (1...4).contains(dims) else { throw FormatError("\(name): tensor \(tname) has \(dims) dimensions") }
            var shape: [Int] = []
            for _ in 0..<dims {
                let d = try r.u64()
                guard d > 0, d < 1 << 40 else { throw FormatError("\(name): tensor \(tname) has an implausible dimension \(d)") }
                shape.append(Int(d))
            }
            let rawType = try r.u32()
            guard let type = GGMLType(rawValue: rawType) else { throw FormatError("\(name): tensor \(tname) has ggml type \(rawType), which moepack does not read") }
            let offset = try r.u64()
            guard offset < 1 << 50 else { throw FormatError("\(name): tensor \(tname) has an implausible offset") }
            infos.append((GGUFTensorInfo(name: tname, dimensions: shape, type: type), Int(offset)))
        }
        let start = (r.position + alignment - 1) / alignment * alignment
        var tensors: [Tensor] = []
        for (info, offset) in infos {
            guard let n = info.byteCount, offset % alignment == 0, start + offset + n <= data.count else {
                throw FormatError("\(name): tensor \(info.name) lies outside the file or is misaligned")
            }
            tensors.append(Tensor(info: info, offset: start + offset, byteCount: n))
        }
        self.alignment = alignment
        self.metadata = metadata
        self.keys = keys
        self.tensors = tensors
    }

    public func tensor(_ name: String) -> Tensor? { tensors.first { $0.info.name == name } }

    struct Cursor {
        let bytes: Data
        let name: String
        var position = 0

        mutating func take(_ n: Int) throws -> [UInt8] {
            guard n >= 0, n <= bytes.count - position else { throw FormatError("\(name): GGUF file is truncated") }
            defer { position += n }
            return Array(bytes[position..<(position + n)])
        }
        mutating func u32() throws -> UInt32 { try take(4).enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * $1.offset) } }
        mutating func u64() throws -> UInt64 { try take(8).enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * $1.offset) } }
        mutating func raw() throws -> [UInt8] {
            let n = try u64()
            guard n <= UInt64(bytes.count - position) else { throw FormatError("\(name): GGUF string runs past the end") }
            return try take(Int(n))
        }
        mutating func string() throws -> String { String(decoding: try raw(), as: UTF8.self) }

        /// Sizes of the fixed-width GGUF value types by id (uint8 ... float64).
        static let widths: [UInt32: Int] = [0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8]

        mutating func value(type: UInt32) throws -> GGUFValue? {
            switch type {
            case GGUFValue.tUInt32: return .uint32(try u32())
            case GGUFValue.tInt32: return .int32(Int32(bitPattern: try u32()))
            case GGUFValue.tFloat32: return .float32(Float(bitPattern: try u32()))
            case GGUFValue.tBool: return .bool(try take(1)[0] != 0)
            case GGUFValue.tString: return .string(try string())
            case GGUFValue.tArray:
                let element = try u32(), count = try u64()
                guard count <= UInt64(bytes.count - position) else { throw FormatError("\(name): GGUF array runs past the end") }
                switch element {
                case GGUFValue.tString:
                    var a: [[UInt8]] = []
                    for _ in 0..<count { a.append(try raw()) }
                    return .byteStrings(a)
                case GGUFValue.tFloat32:
                    var a: [Float] = []
                    for _ in 0..<count { a.append(Float(bitPattern: try u32())) }
                    return .float32s(a)
                case GGUFValue.tInt32:
                    var a: [Int32] = []
                    for _ in 0..<count { a.append(Int32(bitPattern: try u32())) }
                    return .int32s(a)
                default:
                    guard let w = Self.widths[element] else { throw FormatError("\(name): GGUF array of type \(element) is not supported") }
                    _ = try take(Int(count) * w)
                    return nil
                }
            default:
                guard let w = Self.widths[type] else { throw FormatError("\(name): GGUF value type \(type) is unknown") }
                _ = try take(w)
                return nil
            }
        }
    }
}
