import CBLAS
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
    /// The stored bytes as the MoEKernels products read them, when the operator keeps them in
    /// one fixed buffer; lets `LinearBatch` run several products as one kernel call.
    var kernelWeights: KernelWeights? { get }
}

extension MatrixOperator {
    public var kernelWeights: KernelWeights? { nil }
}

/// A weight buffer in a MoEKernels format, valid as long as its operator lives.
public struct KernelWeights: @unchecked Sendable {
    public let format: Int32
    public let base: UnsafeRawPointer
    public let rows: Int
    public let cols: Int
}

/// f32 products shared by the f32 operators. One row of X, or a matrix of at most
/// `kernelRows` rows (the MoE router), goes through the kernels' f32 path on the thread pool;
/// several rows of a larger matrix through OpenBLAS sgemm (single-threaded, see
/// `KernelConfig.setThreads`) on slices of W's rows, one slice per pool task. The router
/// thus gives a token bit-identical logits whether it is decoded alone or in a batch, and a
/// batch of a few rows does not pay for sgemm's packing.
enum F32Product {
    static let kernelRows = 256

    static func multiply(_ w: UnsafePointer<Float>, rows: Int, cols: Int, _ x: UnsafePointer<Float>, count: Int,
                         into y: UnsafeMutablePointer<Float>) {
        guard rows > 0, count > 0 else { return }
        if count == 1 || rows <= kernelRows {
            _ = moe_matmul(Int32(MOE_FMT_F32), w, Int64(rows), Int64(cols), x, Int64(count), y)
            return
        }
        let slices = rows * cols * count >= 1 << 20 ? min(max(rows / 64, 1), 4 * KernelConfig.threads) : 1
        KernelPool.parallelFor(slices) { s in
            let r0 = rows * s / slices, r1 = rows * (s + 1) / slices
            guard r1 > r0 else { return }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(count), Int32(r1 - r0), Int32(cols), 1,
                        x, Int32(cols), w + r0 * cols, Int32(cols), 0, y + r0, Int32(rows))
        }
    }
}

/// An f32 matrix held in memory (checkpoint weights).
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
            F32Product.multiply(w.baseAddress!, rows: rows, cols: cols, x, count: count, into: y)
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
/// kernel view or is f32 with several input rows (sgemm is faster there).
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
            guard let w = item.linear.kernel, w.format != Int32(MOE_FMT_F32) || item.count == 1 else {
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
