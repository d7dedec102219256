import MoEFormat
import MoEKernels

/// A quantized matrix is a weight operator the model can run on directly.
extension QuantizedMatrix: MatrixOperator {
    public var storageBytes: Int { bytes.count }

    public func multiply(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>) {
        matmul(x: UnsafeBufferPointer(start: x, count: count * cols), tokens: count,
               y: UnsafeMutableBufferPointer(start: y, count: count * rows))
    }

    public var kernelWeights: KernelWeights? {
        bytes.baseAddress.map { KernelWeights(format: format.id, base: $0, rows: rows, cols: cols) }
    }

    public func copyRow(_ row: Int, into destination: UnsafeMutablePointer<Float>) {
        guard row >= 0, row < rows, let base = bytes.baseAddress, let rowBytes = format.rowBytes(cols: cols) else { return }
        _ = moe_dequantize(format.id, base + row * rowBytes, 1, Int64(cols), destination)
    }
}
