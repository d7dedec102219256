#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A buffered, append-only file descriptor that turns every failed write into a clear error
/// (a full disk is named as such).
final class FileOutput {
    let path: String
    private(set) var fd: Int32
    private var buffer: [UInt8] = []
    private let capacity = 4 << 20
    /// Logical bytes written so far (including the buffer).
    private(set) var position = 0

    init(creating path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw FormatError("cannot create \(path): \(String(cString: strerror(errno)))")
        }
        buffer.reserveCapacity(capacity)
    }

    func append(_ bytes: UnsafeRawBufferPointer) throws {
        position += bytes.count
        if buffer.count + bytes.count > capacity { try flush() }
        if bytes.count >= capacity {
            try writeAll(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    func append(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try append($0) } }

    func appendZeros(_ count: Int) throws {
        guard count > 0 else { return }
        try append([UInt8](repeating: 0, count: count))
    }

    func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Overwrites bytes at `offset` (already written and flushed).
    func write(_ bytes: [UInt8], at offset: Int) throws {
        try flush()
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
        if n != bytes.count { throw writeError(n < 0 ? errno : ENOSPC) }
    }

    func sync() throws {
        try flush()
        guard fsync(fd) == 0 else { throw FormatError("cannot sync \(path): \(String(cString: strerror(errno)))") }
    }

    func close() {
        if fd >= 0 { _ = Glibc.close(fd) }
        fd = -1
    }

    deinit { close() }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw writeError(errno)
            }
            if n == 0 { throw writeError(ENOSPC) }
            done += n
        }
    }

    private func writeError(_ code: Int32) -> FormatError {
        if code == ENOSPC || code == EDQUOT {
            return FormatError("no space left on the device while writing \(path) (\(position) bytes written)")
        }
        return FormatError("cannot write \(path): \(String(cString: strerror(code)))")
    }
}

/// Atomic writing: an output is written to a temporary file next to it, then synced and
/// renamed over the output path, so a reader never sees a half-written file and a failed or
/// interrupted write leaves nothing at the output path.
extension FileOutput {
    /// A new temporary file in the output's folder, after checking the folder exists and the
    /// output path is not a directory.
    static func partial(for outputPath: String) throws -> FileOutput {
        let url = URL(fileURLWithPath: outputPath)
        let directory = url.deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw FormatError("output folder \(directory) does not exist")
        }
        if FileManager.default.fileExists(atPath: outputPath, isDirectory: &isDirectory), isDirectory.boolValue {
            throw FormatError("output path \(outputPath) is a directory")
        }
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial-\(getpid())").path
        unlink(temporary)
        return try FileOutput(creating: temporary)
    }

    /// Syncs and closes the file, renames it onto `outputPath` and syncs the folder.
    func commit(renamingTo outputPath: String) throws {
        try sync()
        close()
        guard rename(path, outputPath) == 0 else {
            throw FormatError("cannot move \(path) to \(outputPath): \(String(cString: strerror(errno)))")
        }
        let folder = open(URL(fileURLWithPath: outputPath).deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY)
        if folder >= 0 {
            _ = fsync(folder)
            _ = Glibc.close(folder)
        }
    }

    /// Closes and removes the temporary file.
    func discard() {
        close()
        unlink(path)
    }
}

