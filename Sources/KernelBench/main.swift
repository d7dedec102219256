// moepack-kernel-bench: weight bytes streamed per second by the quantized
// matvec kernels, next to a STREAM-style read bandwidth figure (the limit a
// memory-bound matvec can reach), then the multiply-add rate of products of
// several tokens (what a batched decode step of that many sequences does with
// each weight). "hot" reuses one matrix (cache-resident for small shapes);
// "cold" cycles through enough copies to exceed the caches.
// Build with `swift build -c release`.
import Foundation
import MoEFormat
import MoEKernels
import MoERuntime

let coldBytes = 192 << 20

/// `--formats int8,q3g64` measures only the named formats (all by default); `--no-batch`
/// leaves out the products of several tokens.
let arguments = CommandLine.arguments.dropFirst()
let chosenFormats: Set<String>? = arguments.firstIndex(of: "--formats").flatMap { i in
    arguments.index(after: i) < arguments.endIndex
        ? Set(arguments[arguments.index(after: i)].split(separator: ",").map(String.init)) : nil
}
let runBatch = !arguments.contains("--no-batch")

func seconds(_ body: () -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

/// Median time of `body(i)` over calls i = 0, 1, 2, ... for about `budget`
/// seconds. Every call is short (well under a scheduler time slice) and timed
/// on its own, so the median is robust on a shared, busy machine where a long
/// timed loop would also measure the time the thread was descheduled.
func medianTime(budget: Double = 0.5, _ body: (Int) -> Void) -> Double {
    body(0)
    var times: [Double] = []
    var spent = 0.0, i = 1
    while spent < budget || times.count < 20 {
        let t = seconds { body(i) }
        times.append(t)
        spent += t
        i += 1
    }
    times.sort()
    return times[times.count / 2]
}

/// STREAM-style read: sums a buffer far larger than the caches in 1 MB pieces, each thread
/// reading `streams` streams side by side.
func readBandwidth(threads: Int, streams: Int) -> Double {
    KernelConfig.setThreads(threads)
    let n = coldBytes / 4, chunk = (1 << 20) / 4
    let a = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
    defer { a.deallocate() }
    for i in 0..<n { a[i] = Float(i & 1023) }
    var sink = 0.0
    let t = medianTime(budget: 1.0) { i in
        sink += moe_read_sum(a.baseAddress! + (i * chunk) % n, Int64(chunk), Int32(streams))
    }
    if sink == 42 { print("") }
    return Double(chunk * 4) / t / 1e9
}

struct Shape { let name: String; let rows: Int; let cols: Int }
let shapes = [Shape(name: "4096x1024", rows: 4096, cols: 1024),
              Shape(name: "expert 1024->512", rows: 512, cols: 1024),
              Shape(name: "expert 512->1024", rows: 1024, cols: 512)]

func randomFloats(_ n: Int, seed: UInt64, scale: Float) -> [Float] {
    var s = seed
    return (0..<n).map { _ in
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return (Float(s >> 40) / Float(1 << 24) * 2 - 1) * scale
    }
}

/// Weight GB/s of one matvec: hot reuses one matrix, cold cycles through
/// copies that together exceed the last-level cache.
func matvecGBs(_ copies: [QuantizedMatrix], x: [Float], threads: Int) -> Double {
    KernelConfig.setThreads(threads)
    var y = [Float](repeating: 0, count: copies[0].rows)
    let t = medianTime { i in
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { copies[i % copies.count].matvec(x: xp, y: $0) }
        }
    }
    return Double(copies[0].byteCount) / t / 1e9
}

print("kernel path: \(KernelConfig.path.name)")
for streams in [1, MemoryBandwidth.defaultStreams] {
    let read1 = readBandwidth(threads: 1, streams: streams), read2 = readBandwidth(threads: 2, streams: streams)
    print(String(format: "read bandwidth (1 MB pieces of %d MB f32, %d stream%@ per thread, median): 1 thread %.1f GB/s, 2 threads %.1f GB/s",
                 coldBytes >> 20, streams, streams == 1 ? "" : "s", read1, read2))
}
// The probe `moepack bench` reports, for comparison.
KernelConfig.setThreads(2)
print(String(format: "moepack bench's probe (%@): %.1f GB/s", MemoryBandwidth.describe(threads: 2),
             try MemoryBandwidth.measureRead() / 1e9))
print("")
print("format     shape               bytes    hot1   hot2  cold1  cold2 GB/s   err-vs-deq  err-vs-f32")
for shape in shapes {
    let w = randomFloats(shape.rows * shape.cols, seed: 1, scale: 0.05)
    let x = randomFloats(shape.cols, seed: 2, scale: 1)
    let exact: [Float] = (0..<shape.rows).map { r in
        var acc = 0.0
        for c in 0..<shape.cols { acc += Double(w[r * shape.cols + c]) * Double(x[c]) }
        return Float(acc)
    }
    let yMax = exact.map(abs).max() ?? 1
    for f in WeightFormat.allCases where chosenFormats?.contains(f.rawValue) ?? true {
        guard let q = try? QuantizedMatrix(quantizing: w, rows: shape.rows, cols: shape.cols, format: f) else { continue }
        let raw = Array(q.bytes)
        let n = max(2, coldBytes / q.byteCount)
        let copies = (0..<n).compactMap { _ in try? QuantizedMatrix(copying: raw, rows: q.rows, cols: q.cols, format: f) }
        let hot1 = matvecGBs([q], x: x, threads: 1)
        let hot2 = matvecGBs([q], x: x, threads: 2)
        let cold1 = matvecGBs(copies, x: x, threads: 1)
        let cold2 = matvecGBs(copies, x: x, threads: 2)
        // Relative error of the kernel against the exact product with decoded
        // weights (activation rounding only) and with the original f32 weights.
        let y = q.matvec(x), ref = q.referenceMatmul(x, tokens: 1)
        let errDeq = zip(y, ref).map { abs($0 - $1) }.max()! / yMax
        let errF32 = zip(y, exact).map { abs($0 - $1) }.max()! / yMax
        let label = f.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)
            + " " + shape.name.padding(toLength: 17, withPad: " ", startingAt: 0)
        print(label + String(format: " %8d  %6.1f %6.1f %6.1f %6.1f        %.2e    %.2e",
                             q.byteCount, hot1, hot2, cold1, cold2, errDeq, errF32))
    }
}

/// G multiply-adds per second of one product of `tokens` activation rows (activation
/// quantization included, as in a batched decode step).
func matmulGMACs(_ copies: [QuantizedMatrix], tokens: Int, threads: Int) -> Double {
    KernelConfig.setThreads(threads)
    let m = copies[0]
    let x = randomFloats(tokens * m.cols, seed: 3, scale: 1)
    var y = [Float](repeating: 0, count: tokens * m.rows)
    let t = medianTime(budget: 0.3) { i in
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { copies[i % copies.count].matmul(x: xp, tokens: tokens, y: $0) }
        }
    }
    return Double(m.rows * m.cols * tokens) / t / 1e9
}

if runBatch {
    print("")
    print("products of several tokens (G multiply-adds/s; 4096x1024, hot = one matrix, cold = copies; 16 and 64 tokens as in prefill)")
    print("format     tokens   hot1   hot2  cold1  cold2")
    let batchShape = shapes[0]
    let batchWeights = randomFloats(batchShape.rows * batchShape.cols, seed: 1, scale: 0.05)
    let batchFormats = chosenFormats.map { names in WeightFormat.allCases.filter { names.contains($0.rawValue) } }
        ?? [.int8, .int4g64]
    for f in batchFormats {
        guard let q = try? QuantizedMatrix(quantizing: batchWeights, rows: batchShape.rows, cols: batchShape.cols, format: f)
        else { continue }
        let raw = Array(q.bytes)
        let copies = (0..<max(2, coldBytes / q.byteCount)).compactMap {
            _ in try? QuantizedMatrix(copying: raw, rows: q.rows, cols: q.cols, format: f)
        }
        for tokens in [1, 2, 4, 8, 16, 64] {
            let rates = [matmulGMACs([q], tokens: tokens, threads: 1), matmulGMACs([q], tokens: tokens, threads: 2),
                         matmulGMACs(copies, tokens: tokens, threads: 1), matmulGMACs(copies, tokens: tokens, threads: 2)]
            print(f.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)
                  + String(format: " %6d  %5.1f  %5.1f  %5.1f  %5.1f", tokens, rates[0], rates[1], rates[2], rates[3]))
        }
    }
}
KernelConfig.setThreads(1)
