import Foundation

/// Writes a safetensors file whose tensor list is known up front, streaming the data one
/// tensor at a time in the declared order (so nothing larger than one tensor is in memory).
/// Write errors, a full disk among them, are clear errors naming the file.
public final class SafeTensorsWriter {
    public struct Entry: Sendable {
        public let name: String
        /// The safetensors dtype name ("F32", "BF16", "I32", "I64", ...).
        public let dtypeName: String
        public let elementBytes: Int
        public let shape: [Int]
        public init(name: String, dtype: DType, shape: [Int]) {
            self.init(name: name, dtypeName: dtype.rawValue, elementBytes: dtype.byteSize, shape: shape)
        }
        public init(name: String, dtypeName: String, elementBytes: Int, shape: [Int]) {
            self.name = name
            self.dtypeName = dtypeName
            self.elementBytes = elementBytes
            self.shape = shape
        }
        public var byteCount: Int { shape.reduce(1, *) * elementBytes }
    }

    private let output: FileOutput
    private let entries: [Entry]
    private var next = 0

    /// Creates `url` (which must not exist) and writes the header for `entries`.
    public init(url: URL, entries: [Entry], metadata: [String: String] = [:]) throws {
        self.entries = entries
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for e in entries {
            header[e.name] = ["dtype": e.dtypeName, "shape": e.shape, "data_offsets": [offset, offset + e.byteCount]]
            offset += e.byteCount
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        output = try FileOutput(creating: url.path)
        var length = UInt64(json.count).littleEndian
        try withUnsafeBytes(of: &length) { try output.append($0) }
        try json.withUnsafeBytes { try output.append($0) }
    }

    /// Appends the next tensor's raw little-endian bytes.
    public func write(_ name: String, bytes: UnsafeRawBufferPointer) throws {
        guard next < entries.count, entries[next].name == name else {
            throw FormatError("safetensors writer: \(name) written out of order")
        }
        guard bytes.count == entries[next].byteCount else {
            throw FormatError("safetensors writer: \(name) has \(bytes.count) bytes, expected \(entries[next].byteCount)")
        }
        try output.append(bytes)
        next += 1
    }

    /// Checks every tensor was written, syncs and closes the file.
    public func close() throws {
        guard next == entries.count else {
            throw FormatError("safetensors writer: \(entries.count - next) tensors were not written")
        }
        try output.sync()
        output.close()
    }
}
