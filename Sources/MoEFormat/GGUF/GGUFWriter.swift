#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// ggml tensor types that moepack writes (ids from ggml.h's `enum ggml_type`, stable).
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 8, iq4_nl = 20, bf16 = 30

    public var name: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q8_0: "Q8_0"
        case .iq4_nl: "IQ4_NL"
        case .bf16: "BF16"
        }
    }

    /// (weights per block, bytes per block), ggml's type traits.
    public var block: (size: Int, bytes: Int) {
        switch self {
        case .f32: (1, 4)
        case .f16, .bf16: (1, 2)
        case .q4_0: (32, 18)
        case .q4_1: (32, 20)
        case .q8_0: (32, 34)
        case .iq4_nl: (32, 18)
        }
    }

    /// Bytes of one row of `cols` values, nil when `cols` is not a multiple of the block.
    public func rowBytes(cols: Int) -> Int? {
        let (size, bytes) = block
        return cols % size == 0 ? cols / size * bytes : nil
    }
}

/// A GGUF metadata value (the subset moepack writes).
public enum GGUFValue: Sendable, Equatable {
    case uint32(UInt32)
    case int32(Int32)
    case float32(Float)
    case bool(Bool)
    case string(String)
    case strings([String])
    /// Strings given as raw bytes (token pieces need not be valid UTF-8 in every tokenizer).
    case byteStrings([[UInt8]])
    case float32s([Float])
    case int32s([Int32])

    // GGUF value type ids (gguf.h).
    static let tUInt32: UInt32 = 4, tInt32: UInt32 = 5, tFloat32: UInt32 = 6, tBool: UInt32 = 7, tString: UInt32 = 8,
               tArray: UInt32 = 9, tUInt64: UInt32 = 10
}

/// One tensor of a GGUF file: its name, its dimensions in ggml order (`ne[0]` is the row length,
/// the fastest-varying; a PyTorch [rows, cols] weight is `[cols, rows]`), and its type.
public struct GGUFTensorInfo: Sendable, Equatable {
    public var name: String
    public var dimensions: [Int]
    public var type: GGMLType

    public init(name: String, dimensions: [Int], type: GGMLType) {
        self.name = name
        self.dimensions = dimensions
        self.type = type
    }

    /// Stored bytes, nil when the row length is not a multiple of the type's block.
    public var byteCount: Int? {
        guard let first = dimensions.first, let row = type.rowBytes(cols: first) else { return nil }
        return dimensions.dropFirst().reduce(row, *)
    }
}

/// Writes a GGUF v3 file (github.com/ggml-org/ggml docs/gguf.md) in one pass: header, metadata,
/// tensor infos, then each tensor's data at an aligned offset, streamed by the caller in the
/// order of `tensors`. Like `BundleWriter`, the file is written next to the output under a
/// temporary name and renamed onto the output path only when complete and synced; `abort` (or
/// dropping the writer unfinished) removes it, so a failed export leaves nothing at the output.
public final class GGUFWriter {
    public static let alignment = 32
    public let outputPath: String
    public let temporaryPath: String
    public let tensors: [GGUFTensorInfo]
    private let out: FileOutput
    private let sizes: [Int]
    private var next = 0
    private var written = 0
    private var dataStart = 0
    private var finished = false

    public init(outputPath: String, metadata: [(String, GGUFValue)], tensors: [GGUFTensorInfo]) throws {
        var names = Set<String>()
        var sizes: [Int] = []
        for t in tensors {
            guard names.insert(t.name).inserted else { throw FormatError("gguf: tensor \(t.name) appears twice") }
            guard t.name.utf8.count < 64 else { throw FormatError("gguf: tensor name \(t.name) is longer than 63 bytes") }
            guard (1...4).contains(t.dimensions.count), t.dimensions.allSatisfy({ $0 > 0 }), let n = t.byteCount else {
                throw FormatError("gguf: tensor \(t.name) has an impossible shape \(t.dimensions) for \(t.type.name)")
            }
            sizes.append(n)
        }
        var keys = Set<String>()
        for (key, _) in metadata where !keys.insert(key).inserted { throw FormatError("gguf: metadata key \(key) appears twice") }
        self.outputPath = outputPath
        self.tensors = tensors
        self.sizes = sizes
        out = try FileOutput.partial(for: outputPath)
        temporaryPath = out.path
        do {
            var head = Encoder()
            head.bytes += Array("GGUF".utf8)
            head.u32(3)
            head.u64(UInt64(tensors.count))
            head.u64(UInt64(metadata.count + 1))
            head.string("general.alignment")
            head.u32(GGUFValue.tUInt32)
            head.u32(UInt32(Self.alignment))
            for (key, value) in metadata {
                head.string(key)
                head.value(value)
            }
            var offset = 0
            for (t, size) in zip(tensors, sizes) {
                head.string(t.name)
                head.u32(UInt32(t.dimensions.count))
                for d in t.dimensions { head.u64(UInt64(d)) }
                head.u32(t.type.rawValue)
                head.u64(UInt64(offset))
                offset += (size + Self.alignment - 1) / Self.alignment * Self.alignment
            }
            try out.append(head.bytes)
            try pad()
            dataStart = out.position
        } catch {
            abort()
            throw error
        }
    }

    deinit { if !finished { abort() } }

    /// The tensor whose data `append` expects next, nil when all are written.
    public var current: GGUFTensorInfo? { next < tensors.count ? tensors[next] : nil }

    /// Appends bytes of the current tensor; a tensor ends when its byte count is reached.
    public func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard next < tensors.count else { throw FormatError("gguf writer: more data than the tensors hold") }
        guard written + bytes.count <= sizes[next] else {
            throw FormatError("gguf writer: tensor \(tensors[next].name) given \(written + bytes.count) bytes, it holds \(sizes[next])")
        }
        do { try out.append(bytes) } catch { abort(); throw error }
        written += bytes.count
        if written == sizes[next] {
            next += 1
            written = 0
            do { try pad() } catch { abort(); throw error }
        }
    }

    public func append(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try append($0) } }

    /// Syncs and renames the complete file onto the output path.
    public func finish() throws {
        guard next == tensors.count else {
            abort()
            throw FormatError("gguf writer: tensor \(tensors[next].name) is incomplete")
        }
        do {
            try out.commit(renamingTo: outputPath)
            finished = true
        } catch {
            abort()
            throw error
        }
    }

    /// Removes the temporary file; nothing is left at the output path.
    public func abort() {
        out.discard()
        finished = true
    }

    private func pad() throws {
        try out.appendZeros((Self.alignment - out.position % Self.alignment) % Self.alignment)
    }

    struct Encoder {
        var bytes: [UInt8] = []
        mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        mutating func raw(_ s: [UInt8]) { u64(UInt64(s.count)); bytes += s }
        mutating func string(_ s: String) { raw(Array(s.utf8)) }
        mutating func value(_ v: GGUFValue) {
            switch v {
            case .uint32(let x): u32(GGUFValue.tUInt32); u32(x)
            case .int32(let x): u32(GGUFValue.tInt32); u32(UInt32(bitPattern: x))
            case .float32(let x): u32(GGUFValue.tFloat32); u32(x.bitPattern)
            case .bool(let x): u32(GGUFValue.tBool); bytes.append(x ? 1 : 0)
            case .string(let s): u32(GGUFValue.tString); string(s)
            case .strings(let a): u32(GGUFValue.tArray); u32(GGUFValue.tString); u64(UInt64(a.count)); for s in a { string(s) }
            case .byteStrings(let a): u32(GGUFValue.tArray); u32(GGUFValue.tString); u64(UInt64(a.count)); for s in a { raw(s) }
            case .float32s(let a): u32(GGUFValue.tArray); u32(GGUFValue.tFloat32); u64(UInt64(a.count)); for x in a { u32(x.bitPattern) }
            case .int32s(let a): u32(GGUFValue.tArray); u32(GGUFValue.tInt32); u64(UInt64(a.count)); for x in a { u32(UInt32(bitPattern: x)) }
            }
        }
    }
}
