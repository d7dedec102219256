import MoEKernels

/// A weight matrix W of shape [rows, cols] (PyTorch's Linear layout: out × in) that can
/// multiply activations. Implementations differ in storage: f32 here, quantized formats in
/// Quant/, bundle payloads in Bundle/.
public protocol MatrixOperator: Sendable {
    var rows: Int { get }
    var cols: Int { get }
    /// Y[T, rows] = X[T, cols] · Wᵀ, both row-major and contiguous.
    func multiply(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>)
    /// Writes row `row` of W as f32 (embedding lookup).
    func copyRow(_ row: Int, into destination: UnsafeMutablePointer<Float>)
    /// Bytes the weights occupy in memory.
    var storageBytes: Int { get }
    /// Gives back the memory pages of weights read from a file mapping (they are read again
    /// from the file, or the page cache, when next used); nothing for weights in owned memory.
    func releasePages()
    /// The stored bytes as the MoEKernels products read them, when the operator keeps them in
    /// one fixed buffer; lets `LinearBatch` run several products as one kernel call.
    var kernelWeights: KernelWeights? { get }
}

extension MatrixOperator {
    public var kernelWeights: KernelWeights? { nil }
    public func releasePages() {}
}

/// A weight buffer in a MoEKernels format, valid as long as its operator lives.
public struct KernelWeights: @unchecked Sendable {
    public let format: Int32
    public let base: UnsafeRawPointer
    public let rows: Int
    public let cols: Int
}

/// An f32 matrix held in memory.
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
            FloatProduct.multiply(format: Int32(MOE_FMT_F32), w.baseAddress!, rows: rows, cols: cols, x, count: count, into: y)
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
    /// `weight.kernelWeights`, kept here: a decode step reaches hundreds of layers once each,
    /// and going through the operator object for it is a chain of cache misses every time.
    let kernel: KernelWeights?

    public init(weight: any MatrixOperator, bias: [Float]? = nil) {
        self.weight = weight
        self.bias = bias
        kernel = weight.kernelWeights
    }

    public var outFeatures: Int { weight.rows }
    public var inFeatures: Int { weight.cols }

    public func callAsFunction(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>) {
        weight.multiply(x, count: count, into: y)
        addBias(count: count, to: y)
    }

    func addBias(count: Int, to y: UnsafeMutablePointer<Float>) {
        guard let bias else { return }
        let n = weight.rows
        bias.withUnsafeBufferPointer { b in
            for t in 0..<count {
                let row = y + t * n
                for i in 0..<n { row[i] += b[i] }
            }
        }
    }
}

/// Several independent linear layers applied as one kernel call: the worker threads are woken
/// once and share the rows of all products (the q/k/v projections, the gate and up projections
/// of every expert a batch routes to). Falls back to one call per layer when a weight has no
/// kernel view or is stored as floats with several input rows (sgemm is faster there).
struct LinearBatch {
    struct Item {
        let linear: Linear
        let x: UnsafePointer<Float>
        let count: Int
        let y: UnsafeMutablePointer<Float>
    }

    var items: [Item] = []

    mutating func add(_ linear: Linear, _ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>) {
        items.append(Item(linear: linear, x: x, count: count, y: y))
    }

    func run() {
        var products: [moe_product] = []
        products.reserveCapacity(items.count)
        for item in items {
            guard let w = item.linear.kernel, !FloatProduct.handles(w.format) || item.count == 1 else {
                for item in items { item.linear(item.x, count: item.count, into: item.y) }
                return
            }
            products.append(moe_product(fmt: w.format, w: w.base, rows: Int64(w.rows), cols: Int64(w.cols),
                                        x: item.x, T: Int64(item.count), y: item.y))
        }
        // Shapes were checked when the operators were made, so this cannot fail.
        _ = moe_matmul_many(products, Int32(products.count))
        for item in items { item.linear.addBias(count: item.count, to: item.y) }
    }
}
