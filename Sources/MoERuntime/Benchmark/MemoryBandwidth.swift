import Foundation
import MoEKernels

/// A STREAM-style read test: how many bytes per second this machine's cores can pull from
/// memory when they read a buffer far larger than the caches. Decoding a token must read
/// every active weight once, so this is the ceiling on decode speed.
public enum MemoryBandwidth {
    /// Bytes per second, best of `repeats`, reading `megabytes` with the kernel worker pool
    /// (sized by `KernelConfig.setThreads`).
    public static func measureRead(megabytes: Int = 512, repeats: Int = 5) -> Double {
        let count = megabytes << 20 / 4
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer { buffer.deallocate() }
        buffer.initialize(repeating: 1, count: count) // touch every page before timing
        var best = 0.0
        var sink = 0.0
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            sink += moe_read_sum(buffer, Int64(count))
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            best = max(best, Double(count * 4) / seconds)
        }
        precondition(sink > 0, "read probe summed nothing")
        return best
    }
}
