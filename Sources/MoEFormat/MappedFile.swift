#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A read-only memory map of a whole file. Pages are only read when touched, so a
/// 40 GB checkpoint costs address space, not memory.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let bytes: UnsafeRawBufferPointer
    private let base: UnsafeMutableRawPointer?
    /// True when `bytes` is an allocated copy (`init(copying:path:)`), not a map.
    private let isCopy: Bool

    public var count: Int { bytes.count }

    public init(path: String) throws {
        self.path = path
        isCopy = false
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw FormatError("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw FormatError("cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw FormatError("\(path) is not a regular file")
        }
        let size = Int(info.st_size)
        if size == 0 {
            base = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let mapped, mapped != MAP_FAILED else {
            throw FormatError("cannot map \(path): \(String(cString: strerror(errno)))")
        }
        base = mapped
        bytes = UnsafeRawBufferPointer(start: mapped, count: size)
    }

    /// The same interface over bytes already in memory (the fuzz targets parse inputs this way);
    /// `path` only names the bytes in messages. The copy is exactly `bytes.count` long, so a
    /// read past the end is caught by the address sanitizer.
    public init(copying data: Data, path: String) {
        self.path = path
        isCopy = true
        guard !data.isEmpty else {
            base = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let copy = UnsafeMutableRawPointer.allocate(byteCount: data.count, alignment: 64)
        data.withUnsafeBytes { copy.copyMemory(from: $0.baseAddress!, byteCount: data.count) }
        base = copy
        bytes = UnsafeRawBufferPointer(start: copy, count: data.count)
    }

    deinit {
        guard let base else { return }
        if isCopy { base.deallocate() } else { munmap(base, bytes.count) }
    }

    /// Gives back the resident pages of bytes offset..<offset+count (whole pages around them).
    /// The map is read-only and file-backed, so a later read faults the same bytes back in:
    /// this only lowers the resident set once a range will not be read again soon.
    public func releasePages(offset: Int, count: Int) {
        guard !isCopy, let base, count > 0, offset >= 0, offset + count <= bytes.count else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset / page * page
        let end = min((offset + count + page - 1) / page * page, (bytes.count + page - 1) / page * page)
        _ = madvise(base + start, end - start, MADV_DONTNEED)
    }

    /// Reads a little-endian integer at `offset`; the caller has checked the bounds.
    func loadLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}
