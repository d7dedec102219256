import Foundation

/// NumPy `.npy` version 1.0 files of little-endian float32, the format of `moepack logits`.
public enum Npy {
    public static func encode(_ values: [Float], shape: [Int]) -> Data {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }"
        // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64, ending in \n.
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data([0x93]) + Data("NUMPY".utf8) + Data([1, 0])
        let length = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(length & 0xff), UInt8(length >> 8)])
        data.append(Data(header.utf8))
        values.withUnsafeBufferPointer { data.append(Data(buffer: $0)) }
        return data
    }

    /// Reads a little-endian float32 C-order array (what `encode` and numpy's `np.save` write).
    public static func decode(_ data: Data) throws -> (values: [Float], shape: [Int]) {
        let bytes = [UInt8](data)
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1..<6]) == Array("NUMPY".utf8) else {
            throw FormatError("not a .npy file")
        }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        if major == 1 {
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        } else if major == 2 || major == 3, bytes.count >= 12 {
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        } else {
            throw FormatError(".npy version \(major) is not supported")
        }
        guard headerStart + headerLength <= bytes.count else { throw FormatError(".npy header is truncated") }
        let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        guard header.contains("'descr': '<f4'") else { throw FormatError(".npy data is not little-endian float32") }
        guard header.contains("'fortran_order': False") else { throw FormatError(".npy data is not in C order") }
        guard let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")") else {
            throw FormatError(".npy header has no shape")
        }
        let shape = header[open.upperBound..<close].split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.compactMap { Int($0) }
        let count = shape.reduce(1, *)
        let dataStart = headerStart + headerLength
        guard bytes.count - dataStart == count * 4 else { throw FormatError(".npy data size does not match its shape") }
        let values = bytes[dataStart...].withUnsafeBytes { raw in
            (0..<count).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
        }
        return (values, shape)
    }
}
