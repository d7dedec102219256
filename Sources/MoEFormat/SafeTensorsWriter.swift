import Foundation

/// Writes a safetensors file whose tensor list is known up front, streaming the data one
/// tensor at a time in the declared order (so nothing larger than one tensor is in memory).
public final class SafeTensorsWriter {
    public struct Entry: Sendable {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        public init(name: String, dtype: DType, shape: [Int]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
        }
        var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }
    }

    private let handle: FileHandle
    private let entries: [Entry]
    private var next = 0

    /// Creates `url` and writes the header for `entries`.
    public init(url: URL, entries: [Entry], metadata: [String: String] = [:]) throws {
        self.entries = entries
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for e in entries {
            header[e.name] = ["dtype": e.dtype.rawValue, "shape": e.shape, "data_offsets": [offset, offset + e.byteCount]]
            offset += e.byteCount
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
            throw FormatError("cannot create \(url.path)")
        }
        handle = try FileHandle(forWritingTo: url)
        var length = UInt64(json.count).littleEndian
        try handle.write(contentsOf: Data(bytes: &length, count: 8))
        try handle.write(contentsOf: json)
    }

    /// Appends the next tensor's raw little-endian bytes.
    public func write(_ name: String, bytes: UnsafeRawBufferPointer) throws {
        guard next < entries.count, entries[next].name == name else {
            throw FormatError("safetensors writer: \(name) written out of order")
        }
        guard bytes.count == entries[next].byteCount else {
            throw FormatError("safetensors writer: \(name) has \(bytes.count) bytes, expected \(entries[next].byteCount)")
        }
        try handle.write(contentsOf: Data(bytes: bytes.baseAddress!, count: bytes.count))
        next += 1
    }

    public func close() throws {
        guard next == entries.count else {
            throw FormatError("safetensors writer: \(entries.count - next) tensors were not written")
        }
        try handle.synchronize()
        try handle.close()
    }
}
