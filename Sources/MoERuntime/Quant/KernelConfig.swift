// Process-wide kernel settings: which SIMD path runs and how many threads
// split the rows of each matrix product. Both live in the C library.
import CBLAS
import MoEKernels

public enum KernelPath: Int32, Sendable, CaseIterable {
    case scalar = 0, avx2 = 1, neon = 2, avx512 = 3

    /// Whether this machine can run the path.
    public var isAvailable: Bool { moe_path_available(rawValue) != 0 }
    public var name: String { String(cString: moe_path_name(rawValue)) }
}

public enum KernelConfig {
    /// Path used by `QuantizedMatrix.matvec/matmul`: the best available one
    /// unless MOEPACK_KERNELS names another available one (scalar, avx2, avx512, neon).
    public static var path: KernelPath { KernelPath(rawValue: moe_default_path()) ?? .scalar }

    public static func setPath(_ path: KernelPath) throws {
        guard moe_set_default_path(path.rawValue) == Int32(MOE_OK) else {
            throw QuantError(kind: .pathUnavailable, message: "kernel path \(path.name) is not available on this CPU")
        }
    }

    /// Total threads per matrix product, including the caller (default 1).
    /// The worker threads are created here once and reused by every call.
    public static var threads: Int { Int(moe_get_threads()) }

    /// Seconds spent inside the worker pool's jobs so far (see `moe_pool_busy_ns`): the time a
    /// computation spends outside them is what runs on one thread.
    public static var poolBusySeconds: Double { Double(moe_pool_busy_ns()) / 1e9 }

    /// Sizes the pool. OpenBLAS is set to one thread: every parallel section of the runtime
    /// (its sgemm calls included) runs on this pool, so two thread pools never spin against
    /// each other for the same cores.
    @discardableResult
    public static func setThreads(_ n: Int) -> Int {
        openblas_set_num_threads(1)
        return Int(moe_set_threads(Int32(clamping: n)))
    }
}

extension KernelConfig {
    /// For executables that run models: keeps freed memory of large allocations in the heap, so
    /// buffers allocated every decode step (a batch's logits) do not fault in fresh pages each time.
    public static func keepHeapMemory() { moe_keep_heap_memory() }
}

/// Parallel sections on the kernels' worker pool.
public enum KernelPool {
    /// Runs `body(i)` for every i in 0..<count, spread over the pool's threads (any order).
    /// `body` must not start kernel products itself: the pool runs one job at a time.
    public static func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        guard count > 0 else { return }
        if count == 1 || KernelConfig.threads == 1 {
            for i in 0..<count { body(i) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            var task = escapable
            withUnsafeMutablePointer(to: &task) { pointer in
                moe_parallel_for(Int32(clamping: count), { context, chunk, _ in
                    context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(chunk))
                }, pointer)
            }
        }
    }
}
