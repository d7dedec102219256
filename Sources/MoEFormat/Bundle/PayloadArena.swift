#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One block of memory that a bundle's zstd payloads are decompressed into, side by side.
///
/// Decoding reads every weight once per token, so the weights cross far more 4 KiB pages than
/// the TLB holds, and each new page costs a page-table walk. A single anonymous mapping lets
/// Linux back the block with 2 MiB pages (`MADV_HUGEPAGE`; transparent huge pages set to
/// `madvise` or `always`), which took one-sequence decode on bench-moe wint4 from 5.19 to
/// 4.63 ms a token (8 interleaved runs, 2-core Zen 3). Where huge pages are unavailable the
/// block is ordinary memory and nothing else changes.
public final class PayloadArena: @unchecked Sendable {
    /// Transparent huge-page size on x86-64 (and arm64 with 4 KiB base pages); the mapping is aligned to it.
    static let hugePage = 2 << 20
    /// Payload offsets are multiples of this (the kernels' row loads assume 64-byte alignment).
    public static let alignment = 64

    public let capacity: Int
    private let mapping: UnsafeMutableRawPointer
    private let mappedBytes: Int
    private let base: UnsafeMutableRawPointer

    /// Reserves `capacity` bytes. Pages are only committed when written.
    public init(capacity: Int) throws {
        precondition(capacity >= 0, "PayloadArena: negative capacity")
        self.capacity = capacity
        mappedBytes = (max(capacity, 1) + 2 * Self.hugePage - 1) / Self.hugePage * Self.hugePage
        let mapped = mmap(nil, mappedBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let mapped, mapped != MAP_FAILED else {
            throw FormatError("cannot reserve \(capacity) bytes for the decompressed weights: \(String(cString: strerror(errno)))")
        }
        mapping = mapped
        let aligned = (Int(bitPattern: mapped) + Self.hugePage - 1) / Self.hugePage * Self.hugePage
        base = UnsafeMutableRawPointer(bitPattern: aligned)!
        #if os(Linux)
        // Advice only: a kernel without transparent huge pages refuses it and 4 KiB pages serve.
        _ = madvise(base, mappedBytes - (aligned - Int(bitPattern: mapped)), MADV_HUGEPAGE)
        #endif
    }

    deinit { munmap(mapping, mappedBytes) }

    /// `count` bytes at `offset`, which the caller has laid out within the capacity.
    public func region(offset: Int, count: Int) -> UnsafeMutableRawBufferPointer {
        precondition(offset >= 0 && count >= 0 && offset + count <= capacity, "PayloadArena: region outside the arena")
        return UnsafeMutableRawBufferPointer(start: base + offset, count: count)
    }

    /// Offsets for payloads of the given sizes placed one after another, each aligned, and the
    /// capacity they need.
    public static func layout(_ sizes: [Int]) -> (offsets: [Int], capacity: Int) {
        var offsets: [Int] = []
        offsets.reserveCapacity(sizes.count)
        var end = 0
        for size in sizes {
            offsets.append(end)
            end += (size + alignment - 1) / alignment * alignment
        }
        return (offsets, end)
    }
}
