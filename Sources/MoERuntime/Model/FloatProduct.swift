import CBLAS
import MoEKernels

/// Products of weights stored as floats (f32, bf16 or f16) with f32 activations, accumulated in
/// f32; bf16 and f16 widen to f32 exactly, so every stored dtype computes what transformers does.
///
/// One row of X, or a matrix of at most `kernelRows` rows (the MoE router), goes through the
/// kernels' dot products for the stored format on the thread pool. Several rows of a larger
/// matrix go through OpenBLAS sgemm (single-threaded, see `KernelConfig.setThreads`) on slices
/// of W's rows, one slice per pool task: f32 weights directly; bf16 and f16 weights a block of
/// rows at a time, widened into the task's thread's scratch (`moe_thread_floats`, at most
/// `widenFloats`), so prefill keeps sgemm's speed without an f32 copy of the model. The router
/// thus gives a token bit-identical logits whether it is decoded alone or in a batch, and a
/// batch of a few rows does not pay for sgemm's packing.
enum FloatProduct {
    static let kernelRows = 256
    /// Floats of W one task widens before an sgemm call: 1 MiB per thread, as many rows as
    /// a slice of the f32 path holds for the model shapes seen (sgemm packs X once per call).
    static let widenFloats = 1 << 18

    /// Whether `format` (a MoEKernels id) is one this type multiplies.
    static func handles(_ format: Int32) -> Bool {
        format == Int32(MOE_FMT_F32) || format == Int32(MOE_FMT_BF16) || format == Int32(MOE_FMT_F16)
    }

    static func multiply(format: Int32, _ w: UnsafeRawPointer, rows: Int, cols: Int, _ x: UnsafePointer<Float>,
                         count: Int, into y: UnsafeMutablePointer<Float>) {
        guard rows > 0, count > 0 else { return }
        if count == 1 || rows <= kernelRows {
            _ = moe_matmul(format, w, Int64(rows), Int64(cols), x, Int64(count), y)
            return
        }
        let slices = rows * cols * count >= 1 << 20 ? min(max(rows / 64, 1), 4 * KernelConfig.threads) : 1
        if format == Int32(MOE_FMT_F32) {
            let wf = w.assumingMemoryBound(to: Float.self)
            KernelPool.parallelFor(slices) { s in
                let r0 = rows * s / slices, r1 = rows * (s + 1) / slices
                guard r1 > r0 else { return }
                sgemm(x, count: count, wf + r0 * cols, rows: r1 - r0, cols: cols, into: y + r0, stride: rows)
            }
            return
        }
        let block = max(widenFloats / max(cols, 1), 16)
        KernelPool.parallelFor(slices) { s in
            let r0 = rows * s / slices, r1 = rows * (s + 1) / slices
            guard r1 > r0 else { return }
            let n = min(block, r1 - r0)
            guard let scratch = moe_thread_floats(Int64(n * cols)) else { fatalError("out of memory for \(n * cols) floats") }
            var r = r0
            while r < r1 {
                let m = min(n, r1 - r)
                _ = moe_widen(format, w + r * cols * 2, Int64(m * cols), scratch)
                sgemm(x, count: count, scratch, rows: m, cols: cols, into: y + r, stride: rows)
                r += m
            }
        }
    }

    /// y[t * stride + r] = x[t] · w[r] for `count` rows of x and `rows` rows of w.
    private static func sgemm(_ x: UnsafePointer<Float>, count: Int, _ w: UnsafePointer<Float>, rows: Int, cols: Int,
                              into y: UnsafeMutablePointer<Float>, stride: Int) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(count), Int32(rows), Int32(cols), 1,
                    x, Int32(cols), w, Int32(cols), 0, y, Int32(stride))
    }
}
