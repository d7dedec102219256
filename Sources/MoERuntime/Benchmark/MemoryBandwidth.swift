import Foundation
import MoEFormat
import MoEKernels

/// A STREAM-style read test: how many bytes per second this machine's cores can pull from
/// memory when they read a buffer far larger than the caches. Decoding a token must read
/// every active weight once, so this is the ceiling on decode speed.
///
/// It reads the way a good kernel does: the buffer is a `PayloadArena`, the memory a
/// compressed bundle's weights are decompressed into (2 MiB pages advised), and every thread
/// of the kernel worker pool reads its pieces as several streams side by side, which is how a
/// core's prefetchers reach the most bandwidth. The figure is the median of the repeats, so
/// one lucky or unlucky pass on a shared machine does not set it.
public enum MemoryBandwidth {
    /// The probe `bench` reports: MiB read, concurrent streams per thread, reads (the median counts).
    public static let defaultMegabytes = 512
    public static let defaultStreams = 4
    public static let defaultRepeats = 7

    /// Bytes per second: the median of `repeats` reads of `megabytes`, each thread of the
    /// kernel worker pool (sized by `KernelConfig.setThreads`) reading `streams` streams at once.
    /// Throws when the buffer cannot be reserved.
    public static func measureRead(megabytes: Int = defaultMegabytes, streams: Int = defaultStreams,
                                   repeats: Int = defaultRepeats) throws -> Double {
        let count = megabytes << 20 / 4
        let arena = try PayloadArena(capacity: count * 4)
        let region = arena.region(offset: 0, count: count * 4)
        let buffer = region.baseAddress!.bindMemory(to: Float.self, capacity: count)
        buffer.initialize(repeating: 1, count: count) // touch every page before timing
        var rates: [Double] = []
        var sink = 0.0
        for _ in 0..<max(1, repeats) {
            let start = DispatchTime.now().uptimeNanoseconds
            sink += moe_read_sum(buffer, Int64(count), Int32(streams))
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            rates.append(Double(count * 4) / seconds)
        }
        precondition(sink > 0, "read probe summed nothing")
        rates.sort()
        return rates[rates.count / 2]
    }

    /// How `measureRead` with its defaults reads, for reports.
    public static func describe(threads: Int) -> String {
        "median of \(defaultRepeats) reads of \(defaultMegabytes) MiB, \(threads) thread\(threads == 1 ? "" : "s") × "
            + "\(defaultStreams) streams, 2 MiB pages advised"
    }
}
