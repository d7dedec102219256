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
        var g = [Float](repeating: 0, count: n)
        var u = [Float](repeating: 0, count: n)
        g.withUnsafeMutableBufferPointer { gb in
            u.withUnsafeMutableBufferPointer { ub in
                gate(x, count: count, into: gb.baseAddress!)
                up(x, count: count, into: ub.baseAddress!)
                Ops.swiglu(gb.baseAddress!, ub.baseAddress!, count: n)
                down(gb.baseAddress!, count: count, into: y)
            }
        }
    }
}
