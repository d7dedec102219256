import MoEKernels

extension BundleFile {
    /// A stored tensor decoded to f32 by the kernels' decoder (checksum verified): what every
    /// moepack product computes with. A tensor that is not 2-D is decoded as one row.
    public func decodedValues(of tensor: BundleTensor) throws -> [Float] {
        let bytes = try payload(tensor.payload, what: "tensor \(tensor.name)")
        let rows = tensor.shape.count == 2 ? tensor.shape[0] : 1
        var out = [Float](repeating: 0, count: tensor.elementCount)
        let rc = withExtendedLifetime(bytes) {
            out.withUnsafeMutableBufferPointer {
                moe_dequantize(tensor.format.id, bytes.buffer.baseAddress, Int64(rows), Int64(tensor.elementCount / max(rows, 1)), $0.baseAddress)
            }
        }
        guard rc == 0 else { throw FormatError("\(name): cannot decode tensor \(tensor.name): \(String(cString: moe_strerror(rc)))") }
        return out
    }
}
