import Foundation

/// A STREAM-style read test: how many bytes per second this machine's cores can pull from
/// memory when they all read a buffer far larger than the caches. Decoding a token must read
/// every active weight once, so this is the ceiling on decode speed.
public enum MemoryBandwidth {
    /// Returns bytes per second (best of `repeats`), reading `megabytes` with `threads` threads.
    public static func measureRead(megabytes: Int = 512, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                                   repeats: Int = 5) -> Double {
        let count = megabytes << 20 / 8
        let buffer = UnsafeMutablePointer<UInt64>.allocate(capacity: count)
        defer { buffer.deallocate() }
        for i in 0..<count { buffer[i] = UInt64(truncatingIfNeeded: i) } // touch every page
        let parts = max(1, threads)
        let chunk = (count + parts - 1) / parts
        var best = 0.0
        let sink = UnsafeMutablePointer<UInt64>.allocate(capacity: parts)
        defer { sink.deallocate() }
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                let lo = part * chunk, hi = min(count, lo + chunk)
                // Four independent accumulators keep the loop bound by loads, not by the add chain.
                var a: UInt64 = 0, b: UInt64 = 0, c: UInt64 = 0, d: UInt64 = 0
                var i = lo
                while i + 4 <= hi {
                    a &+= buffer[i]; b &+= buffer[i + 1]; c &+= buffer[i + 2]; d &+= buffer[i + 3]
                    i += 4
                }
                while i < hi { a &+= buffer[i]; i += 1 }
                sink[part] = a &+ b &+ c &+ d
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            best = max(best, Double(count * 8) / seconds)
        }
        return best
    }
}
