import Foundation

/// Where one tensor lives inside a safetensors file.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Absolute byte range in the file.
    public let byteRange: Range<Int>

    public var elementCount: Int { shape.reduce(1, *) }
}

/// One memory-mapped `.safetensors` file with a fully validated header.
///
/// Layout: an 8-byte little-endian header length N, N bytes of JSON describing every tensor
/// (`dtype`, `shape`, `data_offsets` relative to the end of the header), then the data.
/// Every header value is checked before use, so hostile files fail with a message, not a crash,
/// and the rules of the format's reference implementation apply: the header is UTF-8 JSON that
/// starts with `{` (trailing spaces pad it), and the tensors cover the data section exactly,
/// in offset order, without holes or overlaps. A header length that is off by a few bytes thus
/// fails instead of shifting every tensor.
public final class SafeTensorsFile: Sendable {
    /// The format's own limit on the JSON header.
    public static let maxHeaderBytes = 100 * 1024 * 1024

    public let path: String
    public let tensors: [String: TensorInfo]
    public let metadata: [String: String]
    private let file: MappedFile

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        self.path = file.path
        let name = (file.path as NSString).lastPathComponent
        guard file.count >= 8 else {
            throw FormatError("\(name): file is \(file.count) bytes, too short for a safetensors header")
        }
        let declared = file.loadLE(UInt64.self, at: 0)
        guard declared <= UInt64(Self.maxHeaderBytes) else {
            throw FormatError("\(name): header length \(declared) exceeds the 100 MB limit")
        }
        let headerLength = Int(declared)
        guard headerLength <= file.count - 8 else {
            throw FormatError("\(name): header length \(headerLength) is larger than the file (\(file.count) bytes)")
        }
        guard headerLength >= 2 else {
            throw FormatError("\(name): header length \(headerLength) is too small for a JSON object")
        }
        let headerData = Data(file.bytes[8..<(8 + headerLength)])
        guard headerData.first == UInt8(ascii: "{") else {
            throw FormatError("\(name): header does not start with '{'")
        }
        guard String(data: headerData, encoding: .utf8) != nil else {
            throw FormatError("\(name): header is not valid UTF-8")
        }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: headerData)
        } catch {
            throw FormatError("\(name): header is not valid JSON")
        }
        guard let object = json as? [String: Any] else {
            throw FormatError("\(name): header is not a JSON object")
        }
        let dataStart = 8 + headerLength
        let dataSize = file.count - dataStart
        var tensors: [String: TensorInfo] = [:]
        var metadata: [String: String] = [:]
        for (key, value) in object {
            if key == "__metadata__" {
                guard let meta = value as? [String: Any] else {
                    throw FormatError("\(name): __metadata__ is not an object")
                }
                for (k, v) in meta {
                    guard let s = v as? String else {
                        throw FormatError("\(name): __metadata__ value for \(k) is not a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            tensors[key] = try Self.parseEntry(key, value, file: name, dataStart: dataStart, dataSize: dataSize)
        }
        try Self.checkCoverage(tensors, dataStart: dataStart, dataSize: dataSize, file: name)
        self.tensors = tensors
        self.metadata = metadata
    }

    private static func parseEntry(_ key: String, _ value: Any, file: String, dataStart: Int, dataSize: Int) throws -> TensorInfo {
        guard let entry = value as? [String: Any] else {
            throw FormatError("\(file): entry for tensor \(key) is not an object")
        }
        guard let dtypeName = entry["dtype"] as? String else {
            throw FormatError("\(file): tensor \(key) has no dtype")
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            let supported = DType.allCases.map(\.rawValue).joined(separator: ", ")
            throw FormatError("\(file): tensor \(key) has unsupported dtype \(dtypeName) (supported: \(supported))")
        }
        guard let shapeValues = entry["shape"] as? [Any] else {
            throw FormatError("\(file): tensor \(key) has no shape")
        }
        var shape: [Int] = []
        var elements = 1
        for v in shapeValues {
            guard let n = exactInt(v), n >= 0 else {
                throw FormatError("\(file): tensor \(key) has an invalid shape \(shapeValues)")
            }
            let (product, overflow) = elements.multipliedReportingOverflow(by: n)
            guard !overflow, product <= dataSize else {
                throw FormatError("\(file): tensor \(key) shape \(shapeValues) does not fit in the file")
            }
            elements = product
            shape.append(n)
        }
        guard let offsets = entry["data_offsets"] as? [Any], offsets.count == 2,
              let begin = exactInt(offsets[0]), let end = exactInt(offsets[1]) else {
            throw FormatError("\(file): tensor \(key) has invalid data_offsets")
        }
        guard begin >= 0, begin <= end, end <= dataSize else {
            throw FormatError("\(file): tensor \(key) data_offsets [\(begin), \(end)] are outside the data section (\(dataSize) bytes)")
        }
        let expected = elements * dtype.byteSize
        guard end - begin == expected else {
            throw FormatError("\(file): tensor \(key) has \(end - begin) bytes but shape \(shape) of \(dtypeName) needs \(expected)")
        }
        return TensorInfo(name: key, dtype: dtype, shape: shape, byteRange: (dataStart + begin)..<(dataStart + end))
    }

    /// The tensors, in offset order, must tile the data section: the first starts at 0, each
    /// starts where the one before ends, and the last ends at the end of the file.
    private static func checkCoverage(_ tensors: [String: TensorInfo], dataStart: Int, dataSize: Int, file: String) throws {
        let sorted = tensors.values.sorted {
            ($0.byteRange.lowerBound, $0.byteRange.upperBound, $0.name) < ($1.byteRange.lowerBound, $1.byteRange.upperBound, $1.name)
        }
        var covered = dataStart
        var previous: String?
        for t in sorted {
            if t.byteRange.lowerBound < covered, let previous {
                throw FormatError("\(file): tensors \(previous) and \(t.name) overlap")
            }
            if t.byteRange.lowerBound > covered {
                throw FormatError("\(file): the data section has a hole of \(t.byteRange.lowerBound - covered) bytes before tensor \(t.name)")
            }
            covered = t.byteRange.upperBound
            previous = t.name
        }
        let trailing = dataStart + dataSize - covered
        guard trailing == 0 else {
            throw FormatError("\(file): \(trailing) bytes after the last tensor are not described by the header "
                              + "(the data section must be covered exactly; a wrong header length gives this)")
        }
    }

    /// JSON numbers arrive as NSNumber; accept only whole, non-boolean values in Int range.
    static func exactInt(_ value: Any) -> Int? {
        guard let number = value as? NSNumber, String(cString: number.objCType) != "c" else { return nil }
        return value as? Int
    }

    /// The raw bytes of a tensor, valid while this file is alive.
    public func rawBytes(_ info: TensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[info.byteRange])
    }

    /// The tensor upcast to f32.
    public func floats(_ info: TensorInfo) -> [Float] {
        let count = info.elementCount
        let raw = rawBytes(info)
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0, let base = raw.baseAddress {
                info.dtype.convertToFloat(base, count: count, into: buffer.baseAddress!)
            }
            initialized = count
        }
    }
}
