import CBLAS

/// A weight matrix W of shape [rows, cols] (PyTorch's Linear layout: out × in) that can
/// multiply activations. Implementations differ in storage: f32 through OpenBLAS here,
/// quantized formats in Quant/.
public protocol MatrixOperator: Sendable {
    var rows: Int { get }
    var cols: Int { get }
    /// Y[T, rows] = X[T, cols] · Wᵀ, both row-major and contiguous.
    func multiply(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>)
    /// Writes row `row` of W as f32 (embedding lookup).
    func copyRow(_ row: Int, into destination: UnsafeMutablePointer<Float>)
    /// Bytes the weights occupy in memory.
    var storageBytes: Int { get }
}

/// An f32 matrix multiplied with OpenBLAS.
public final class DenseMatrix: MatrixOperator, @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    public let values: [Float]

    public init(rows: Int, cols: Int, values: [Float]) {
        precondition(values.count == rows * cols, "DenseMatrix: \(values.count) values for \(rows)x\(cols)")
        self.rows = rows
        self.cols = cols
        self.values = values
    }

    public var storageBytes: Int { values.count * 4 }

    public func multiply(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>) {
        values.withUnsafeBufferPointer { w in
            if count == 1 {
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(rows), Int32(cols), 1, w.baseAddress, Int32(cols),
                            x, 1, 0, y, 1)
            } else {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(count), Int32(rows), Int32(cols), 1,
                            x, Int32(cols), w.baseAddress, Int32(cols), 0, y, Int32(rows))
            }
        }
    }

    public func copyRow(_ row: Int, into destination: UnsafeMutablePointer<Float>) {
        values.withUnsafeBufferPointer { w in
            destination.update(from: w.baseAddress! + row * cols, count: cols)
        }
    }
}

/// A linear layer: a weight operator plus an optional bias.
public struct Linear: Sendable {
    public let weight: any MatrixOperator
    public let bias: [Float]?

    public init(weight: any MatrixOperator, bias: [Float]? = nil) {
        self.weight = weight
        self.bias = bias
    }

    public var outFeatures: Int { weight.rows }
    public var inFeatures: Int { weight.cols }

    public func callAsFunction(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>) {
        weight.multiply(x, count: count, into: y)
        if let bias {
            let n = weight.rows
            bias.withUnsafeBufferPointer { b in
                for t in 0..<count {
                    let row = y + t * n
                    for i in 0..<n { row[i] += b[i] }
                }
            }
        }
    }
}
