// Process-wide kernel settings: which SIMD path runs and how many threads
// split the rows of each matrix product. Both live in the C library.
import MoEKernels

public enum KernelPath: Int32, Sendable, CaseIterable {
    case scalar = 0, avx2 = 1, neon = 2

    /// Whether this machine can run the path.
    public var isAvailable: Bool { moe_path_available(rawValue) != 0 }
    public var name: String { String(cString: moe_path_name(rawValue)) }
}

public enum KernelConfig {
    /// Path used by `QuantizedMatrix.matvec/matmul`: the best available one
    /// unless MOEPACK_KERNELS=scalar is set in the environment.
    public static var path: KernelPath { KernelPath(rawValue: moe_default_path()) ?? .scalar }

    public static func setPath(_ path: KernelPath) throws {
        guard moe_set_default_path(path.rawValue) == Int32(MOE_OK) else {
            throw QuantError(kind: .pathUnavailable, message: "kernel path \(path.name) is not available on this CPU")
        }
    }

    /// Total threads per matrix product, including the caller (default 1).
    /// The worker threads are created here once and reused by every call.
    public static var threads: Int { Int(moe_get_threads()) }

    @discardableResult
    public static func setThreads(_ n: Int) -> Int { Int(moe_set_threads(Int32(clamping: n))) }
}
