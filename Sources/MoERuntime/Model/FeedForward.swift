import MoEFormat

/// SwiGLU MLP: down(silu(gate(x)) · up(x)). Used for dense layers, shared experts and each
/// routed expert.
struct FeedForward: Sendable {
    let gate, up, down: Linear

    init(weights: WeightSource, prefix: String, width: Int, bias: Bool) throws {
        let h = weights.config.hiddenSize
        func linear(_ name: String, _ rows: Int, _ cols: Int) throws -> Linear {
            Linear(weight: try weights.matrix("\(prefix).\(name).weight", rows: rows, cols: cols),
                   bias: bias ? try weights.vector("\(prefix).\(name).bias", count: rows) : nil)
        }
        gate = try linear("gate_proj", width, h)
        up = try linear("up_proj", width, h)
        down = try linear("down_proj", h, width)
    }

    var width: Int { gate.outFeatures }

    /// x [T, hidden] → y [T, hidden].
    func callAsFunction(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>) {
        let n = count * width
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 2 * n)
        defer { scratch.deallocate() }
        var first = LinearBatch()
        addGateUp(to: &first, x, count: count, scratch: scratch)
        first.run()
        activate(count: count, scratch: scratch)
        down(scratch, count: count, into: y)
    }

    /// Queues gate(x) and up(x) into `scratch` [2, T, width].
    func addGateUp(to batch: inout LinearBatch, _ x: UnsafePointer<Float>, count: Int,
                   scratch: UnsafeMutablePointer<Float>) {
        batch.add(gate, x, count: count, into: scratch)
        batch.add(up, x, count: count, into: scratch + count * width)
    }

    /// silu(gate) · up, left in the first half of `scratch`: the input of `down`.
    func activate(count: Int, scratch: UnsafeMutablePointer<Float>) {
        Ops.swiglu(scratch, scratch + count * width, count: count * width)
    }
}
