import MoEFormat

/// SwiGLU MLP: down(silu(gate(x)) · up(x)). Used for dense layers, shared experts and each
/// routed expert.
struct FeedForward: Sendable {
    let gate, up, down: Linear

    /// `name(projection, isBias)`: the tensor names, from the family (`TensorNames`).
    init(weights: WeightSource, name: (FeedForwardProjection, Bool) -> String, width: Int, bias: Bool) throws {
        let h = weights.config.hiddenSize
        func linear(_ p: FeedForwardProjection, _ rows: Int, _ cols: Int) throws -> Linear {
            Linear(weight: try weights.matrix(name(p, false), rows: rows, cols: cols),
                   bias: bias ? try weights.vector(name(p, true), count: rows) : nil)
        }
        gate = try linear(.gate, width, h)
        up = try linear(.up, width, h)
        down = try linear(.down, h, width)
    }

    var width: Int { gate.outFeatures }

    /// x [T, hidden] → y [T, hidden]. `downInput` sees the rows `down` reads.
    func callAsFunction(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>,
                        downInput: ((UnsafePointer<Float>, Int) -> Void)? = nil) {
        let n = count * width
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 2 * n)
        defer { scratch.deallocate() }
        var first = LinearBatch()
        addGateUp(to: &first, x, count: count, scratch: scratch)
        first.run()
        activate(count: count, scratch: scratch)
        downInput?(scratch, width)
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
