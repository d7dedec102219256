#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import MoEFormat

/// Reads rows of checkpoint tensors with pread into reusable buffers, so converting touches
/// each source byte once and never keeps the model's pages resident.
final class TensorReader {
    let checkpoint: Checkpoint
    private var descriptors: [String: Int32] = [:]

    init(checkpoint: Checkpoint) { self.checkpoint = checkpoint }

    deinit { for fd in descriptors.values { close(fd) } }

    private func descriptor(for name: String) throws -> (Int32, TensorInfo) {
        let info = try checkpoint.info(name)
        guard let shard = checkpoint.shards.first(where: { $0.tensors[name] == info }) else {
            throw FormatError("tensor \(name) is not in the checkpoint")
        }
        if let fd = descriptors[shard.path] { return (fd, info) }
        let fd = open(shard.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FormatError("cannot open \(shard.path): \(String(cString: strerror(errno)))") }
        descriptors[shard.path] = fd
        return (fd, info)
    }

    /// Reads `count` elements starting at element `start` of tensor `name`, upcast to f32.
    func read(_ name: String, start: Int, count: Int, into destination: UnsafeMutablePointer<Float>,
              scratch: inout [UInt8]) throws {
        let (fd, info) = try descriptor(for: name)
        guard start >= 0, count >= 0, start + count <= info.elementCount else {
            throw FormatError("tensor \(name): elements \(start)..<\(start + count) are outside its \(info.elementCount)")
        }
        let size = info.dtype.byteSize
        let byteCount = count * size
        if scratch.count < byteCount { scratch = [UInt8](repeating: 0, count: byteCount) }
        try scratch.withUnsafeMutableBytes { buf in
            var done = 0
            let offset = info.byteRange.lowerBound + start * size
            while done < byteCount {
                let n = pread(fd, buf.baseAddress! + done, byteCount - done, off_t(offset + done))
                if n < 0, errno == EINTR { continue }
                guard n > 0 else {
                    throw FormatError("cannot read tensor \(name) from \(checkpoint.directory.path): \(n < 0 ? String(cString: strerror(errno)) : "unexpected end of file")")
                }
                done += n
            }
            info.dtype.convertToFloat(buf.baseAddress!, count: count, into: destination)
        }
    }
}
