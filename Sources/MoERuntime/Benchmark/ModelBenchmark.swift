import CBLAS
import Foundation
import MoEFormat
import MoEKernels

/// Measures a model the way `moepack bench` reports it: prefill and decode speed, the bytes a
/// decoded token must read, and how close decode comes to the memory-bandwidth limit.
public struct ModelBenchmark {
    public struct Options: Sendable {
        public var promptTokens = 128
        public var generatedTokens = 64
        public var runs = 5
        /// Extra contexts at which to measure decode speed (attention grows with context).
        public var decodeContexts = [128, 2048]
        /// Concurrent sequences for the batched-decode measurement (0 or 1: skipped).
        public var batch = 8
        /// The KV cache precision; nil: the model's own (`ErnieModel.cachePrecision`).
        public var cachePrecision: KVCache.Precision?
        public init() {}
    }

    public struct Report: Codable, Sendable {
        public var model: String
        public var threads: Int
        /// The processor (CPUDescription) and the kernel path that ran (KernelConfig).
        public var cpu: String
        public var kernelPath: String
        public var blasCore: String
        public var loadSeconds: Double
        public var promptTokens: Int
        public var generatedTokens: Int
        public var prefillTokensPerSecond: Double
        public var prefillTokensPerSecondRuns: [Double]
        public var prefillGFLOPS: Double
        public var sgemmGFLOPS: Double
        public var decodeTokensPerSecond: Double
        public var decodeTokensPerSecondRuns: [Double]
        public var decodeAtContext: [String: Double]
        /// Batched decode (one `decodeBatch` step for `batchStreams` sequences at a time, as the
        /// server runs them): aggregate tokens/s, and its ratio to single-sequence decode measured
        /// in pairs (one sequence, then the batch, each run), the median of `batchSpeedupRuns`.
        public var batchStreams: Int
        public var batchDecodeTokensPerSecond: Double?
        public var batchSpeedup: Double?
        public var batchSpeedupRuns: [Double]
        /// Share of the time outside the kernel pool's jobs (norms, routing, SwiGLU, gathering
        /// and combining expert rows, sampling: work on one thread), in single-sequence decode
        /// and in a batched step (medians of the paired runs).
        public var decodeSerialFraction: Double?
        public var batchSerialFraction: Double?
        /// How the model's KV cache stores keys and values ("f16" or "f32").
        public var kvCachePrecision: String
        /// zstd decompression speed of the bundle's own payloads on one core (decompressed bytes
        /// per second), when it has zstd payloads.
        public var zstdGBpsPerCore: Double?
        public var activeWeightBytesPerToken: Int
        public var weightBytes: Int
        public var memoryBandwidthGBps: Double
        /// How the bandwidth was measured (MemoryBandwidth.describe).
        public var memoryBandwidthMethod: String
        public var decodeBandwidthFraction: Double
        public var peakRSSBytes: Int
    }

    public let options: Options
    public init(options: Options = Options()) { self.options = options }

    public func run(modelPath: String, threads: Int, log: (String) -> Void = { _ in }) throws -> Report {
        KernelConfig.setThreads(threads)
        let loadStart = Date()
        let model = try ModelLoader.model(at: modelPath, cachePrecision: options.cachePrecision)
        let loadSeconds = Date().timeIntervalSince(loadStart)
        let c = model.config
        let vocab = Int32(c.vocabSize)
        var rng = SystemRandomNumberGenerator()
        let prompt = (0..<options.promptTokens).map { _ in Int32.random(in: 1..<vocab, using: &rng) }

        log("prefill: \(options.promptTokens) tokens × \(options.runs) runs")
        var prefillRates: [Double] = []
        for _ in 0..<options.runs {
            let cache = model.makeCache(capacity: options.promptTokens + options.generatedTokens)
            let t = Date()
            _ = try model.forward(prompt, cache: cache, lastOnly: true)
            prefillRates.append(Double(prompt.count) / Date().timeIntervalSince(t))
        }

        log("decode: \(options.generatedTokens) tokens × \(options.runs) runs")
        var decodeRates: [Double] = []
        for _ in 0..<options.runs {
            decodeRates.append(try decodeRate(model, context: options.promptTokens, tokens: options.generatedTokens))
        }
        var atContext: [String: Double] = [:]
        for context in options.decodeContexts where context + 16 <= c.maxPositionEmbeddings {
            log("decode at context \(context)")
            atContext[String(context)] = try decodeRate(model, context: context, tokens: 16)
        }

        // Each run measures one sequence right before the batch, so the ratio compares the two
        // under the same machine conditions (on a shared machine they drift within minutes).
        var batchRates: [Double] = [], speedups: [Double] = []
        var singleSerial: [Double] = [], batchSerial: [Double] = []
        if options.batch > 1 {
            log("batched decode: \(options.batch) sequences × \(options.runs) runs, each paired with one sequence")
            for _ in 0..<options.runs {
                let single = try decodeTiming(model, context: options.promptTokens, tokens: options.generatedTokens)
                let batched = try batchedDecodeTiming(model, streams: options.batch, context: options.promptTokens,
                                                      tokens: options.generatedTokens)
                batchRates.append(batched.rate)
                speedups.append(batched.rate / single.rate)
                singleSerial.append(single.serial)
                batchSerial.append(batched.serial)
            }
        }

        log("memory bandwidth")
        let bandwidth = try MemoryBandwidth.measureRead()
        let zstd = try Self.zstdDecompressionGBps(path: modelPath)
        // The sgemm reference runs last on OpenBLAS's own threads, once the kernel pool's workers
        // have gone idle, so the two pools never compete for the cores during a measurement.
        log("OpenBLAS sgemm reference")
        let sgemm = Self.sgemmGFLOPS(m: options.promptTokens, n: c.hiddenSize, k: c.hiddenSize, threads: threads)
        let active = model.activeWeightBytesPerToken
        let decode = median(decodeRates)
        let prefill = median(prefillRates)
        let flopsPerToken = 2.0 * Double(ModelLayout(config: c).parameterCounts.activePerToken)
        return Report(
            model: modelPath, threads: threads, cpu: CPUDescription.current(), kernelPath: KernelConfig.path.name,
            blasCore: String(cString: openblas_get_corename()),
            loadSeconds: loadSeconds, promptTokens: options.promptTokens, generatedTokens: options.generatedTokens,
            prefillTokensPerSecond: prefill, prefillTokensPerSecondRuns: prefillRates,
            prefillGFLOPS: prefill * flopsPerToken / 1e9,
            sgemmGFLOPS: sgemm,
            decodeTokensPerSecond: decode, decodeTokensPerSecondRuns: decodeRates, decodeAtContext: atContext,
            batchStreams: options.batch,
            batchDecodeTokensPerSecond: batchRates.isEmpty ? nil : median(batchRates),
            batchSpeedup: speedups.isEmpty ? nil : median(speedups), batchSpeedupRuns: speedups,
            decodeSerialFraction: singleSerial.isEmpty ? nil : median(singleSerial),
            batchSerialFraction: batchSerial.isEmpty ? nil : median(batchSerial),
            kvCachePrecision: model.cachePrecision.rawValue,
            zstdGBpsPerCore: zstd,
            activeWeightBytesPerToken: active, weightBytes: model.weightBytes,
            memoryBandwidthGBps: bandwidth / 1e9, memoryBandwidthMethod: MemoryBandwidth.describe(threads: threads),
            decodeBandwidthFraction: decode * Double(active) / bandwidth,
            peakRSSBytes: Self.peakRSS())
    }

    /// Tokens per second decoding `tokens` tokens one at a time after a `context`-token prefill.
    public func decodeRate(_ model: ErnieModel, context: Int, tokens: Int) throws -> Double {
        try decodeTiming(model, context: context, tokens: tokens).rate
    }

    /// decodeRate, and the share of the decoding time spent outside the kernel pool's jobs.
    func decodeTiming(_ model: ErnieModel, context: Int, tokens: Int) throws -> (rate: Double, serial: Double) {
        let cache = model.makeCache(capacity: context + tokens)
        var rng = SystemRandomNumberGenerator()
        let vocab = Int32(model.config.vocabSize)
        _ = try model.forward((0..<context).map { _ in Int32.random(in: 1..<vocab, using: &rng) }, cache: cache, lastOnly: true)
        var token: Int32 = 1
        let (t, busy) = (Date(), KernelConfig.poolBusySeconds)
        for _ in 0..<tokens {
            let logits = try model.forward([token], cache: cache, lastOnly: true)
            token = Self.argmax(logits[...])
        }
        let wall = Date().timeIntervalSince(t)
        return (Double(tokens) / wall, max(0, 1 - (KernelConfig.poolBusySeconds - busy) / wall))
    }

    /// Greedy choice (index of the largest logit), in C so the measurement is the model's time.
    static func argmax(_ logits: ArraySlice<Float>) -> Int32 {
        logits.withUnsafeBufferPointer { Int32(moe_argmax($0.baseAddress!, $0.count)) }
    }

    /// Aggregate tokens per second of `streams` sequences decoding together, each after its own
    /// `context`-token prefill, `tokens` steps of `decodeBatch` (the server's decode loop), and the
    /// share of that time spent outside the kernel pool's jobs.
    func batchedDecodeTiming(_ model: ErnieModel, streams: Int, context: Int, tokens: Int) throws
        -> (rate: Double, serial: Double) {
        let vocab = Int32(model.config.vocabSize)
        var rng = SystemRandomNumberGenerator()
        var caches: [KVCache] = []
        var next: [Int32] = []
        for _ in 0..<streams {
            let cache = model.makeCache(capacity: context + tokens)
            let logits = try model.forward((0..<context).map { _ in Int32.random(in: 1..<vocab, using: &rng) },
                                           cache: cache, lastOnly: true)
            caches.append(cache)
            next.append(Self.argmax(logits[...]))
        }
        let v = model.config.vocabSize
        let (t, busy) = (Date(), KernelConfig.poolBusySeconds)
        for _ in 0..<tokens {
            let logits = try model.decodeBatch(tokens: next, caches: caches)
            next = (0..<streams).map { b in Self.argmax(logits[(b * v)..<((b + 1) * v)]) }
        }
        let wall = Date().timeIntervalSince(t)
        return (Double(streams * tokens) / wall, max(0, 1 - (KernelConfig.poolBusySeconds - busy) / wall))
    }

    /// Decompressed GB/s of zstd on one thread, over the largest zstd payloads of a bundle (up to
    /// 256 MiB of output, best of 3, into memory already mapped in); nil for a checkpoint or a
    /// bundle without zstd payloads.
    public static func zstdDecompressionGBps(path: String) throws -> Double? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else { return nil }
        let bundle = try BundleFile(path: path)
        var chosen: [BundleTensor] = [], total = 0
        for t in bundle.manifest.tensors.filter({ $0.payload.compression == .zstd })
            .sorted(by: { $0.payload.rawLength > $1.payload.rawLength }) where total < 256 << 20 {
            chosen.append(t)
            total += t.payload.rawLength
        }
        guard total > 0 else { return nil }
        // Into one buffer touched beforehand, so page faults of fresh memory are not counted.
        let largest = chosen.map(\.payload.rawLength).max() ?? 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: largest, alignment: 64)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        var best = 0.0
        for _ in 0..<3 {
            let start = Date()
            for t in chosen {
                try bundle.decompress(t.payload, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<t.payload.rawLength]),
                                      what: t.name)
            }
            best = max(best, Double(total) / Date().timeIntervalSince(start) / 1e9)
        }
        return best
    }

    /// OpenBLAS sgemm speed on `threads` of OpenBLAS's own threads (the kernel pool is shrunk
    /// to one thread meanwhile and restored after, so the two pools never compete).
    public static func sgemmGFLOPS(m: Int, n: Int, k: Int, threads: Int) -> Double {
        let poolThreads = KernelConfig.threads
        _ = KernelConfig.setThreads(1)
        openblas_set_num_threads(Int32(threads))
        defer {
            openblas_set_num_threads(1)
            _ = KernelConfig.setThreads(poolThreads)
        }
        return sgemmGFLOPS(m: m, n: n, k: k)
    }

    /// OpenBLAS sgemm speed on an [m, k] × [k, n] product, best of a few runs.
    public static func sgemmGFLOPS(m: Int, n: Int, k: Int) -> Double {
        let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: k * n)
        var c = [Float](repeating: 0, count: m * n)
        var best = 0.0
        for _ in 0..<5 {
            let t = Date()
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(k), 0, &c, Int32(n))
            best = max(best, 2.0 * Double(m * n * k) / Date().timeIntervalSince(t) / 1e9)
        }
        return best
    }

    static func peakRSS() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Int(usage.ru_maxrss) * 1024
    }

    func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        return s.isEmpty ? 0 : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}
