#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CZstd
import Foundation

/// Writes a bundle in one pass: payloads are streamed into a temporary file next to the
/// output, then the manifest and the header go in, the file is synced and renamed over the
/// output path. Until `finish` succeeds nothing exists at the output path; `abort` (or
/// dropping the writer) removes the temporary file.
public final class BundleWriter {
    public let outputPath: String
    public let temporaryPath: String
    public let alignment = BundleFormat.alignment
    private let out: FileOutput
    private var finished = false
    private var cctx: OpaquePointer?
    private var current: (offset: Int, rawLength: Int, rawWritten: Int, compression: PayloadCompression, crc: CRC32C)?
    private var zstdOut: [UInt8] = []

    public init(outputPath: String) throws {
        self.outputPath = outputPath
        out = try FileOutput.partial(for: outputPath)
        temporaryPath = out.path
        do { try out.appendZeros(BundleFormat.headerSize) } catch { abort(); throw error }
    }

    deinit {
        if !finished { abort() }
        if let cctx { ZSTD_freeCCtx(cctx) }
    }

    /// Starts a payload section of `rawLength` bytes (before compression).
    public func beginPayload(rawLength: Int, compression: PayloadCompression, zstdLevel: Int = 3) throws {
        guard current == nil else { throw FormatError("bundle writer: previous payload not finished") }
        try out.appendZeros((alignment - out.position % alignment) % alignment)
        if compression == .zstd {
            if cctx == nil { cctx = ZSTD_createCCtx() }
            guard let cctx else { throw FormatError("zstd: cannot create a compression context") }
            ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters)
            try zstdCheck(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, Int32(zstdLevel)))
            try zstdCheck(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0))
            try zstdCheck(ZSTD_CCtx_setPledgedSrcSize(cctx, UInt64(rawLength)))
            if zstdOut.isEmpty { zstdOut = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize()) }
        }
        current = (out.position, rawLength, 0, compression, CRC32C())
    }

    /// Appends raw (uncompressed) bytes to the open payload.
    public func appendPayload(_ bytes: UnsafeRawBufferPointer) throws {
        guard var section = current else { throw FormatError("bundle writer: no open payload") }
        section.rawWritten += bytes.count
        guard section.rawWritten <= section.rawLength else {
            throw FormatError("bundle writer: payload longer than its declared \(section.rawLength) bytes")
        }
        switch section.compression {
        case .none:
            section.crc.update(bytes)
            try out.append(bytes)
        case .zstd:
            try compress(bytes, end: false, crc: &section.crc)
        }
        current = section
    }

    /// Closes the open payload and returns where it is.
    public func endPayload() throws -> PayloadLocation {
        guard var section = current else { throw FormatError("bundle writer: no open payload") }
        guard section.rawWritten == section.rawLength else {
            throw FormatError("bundle writer: payload has \(section.rawWritten) of its declared \(section.rawLength) bytes")
        }
        if section.compression == .zstd { try compress(UnsafeRawBufferPointer(start: nil, count: 0), end: true, crc: &section.crc) }
        current = nil
        return PayloadLocation(offset: section.offset, length: out.position - section.offset, rawLength: section.rawLength,
                               compression: section.compression, crc32c: section.crc.value)
    }

    /// Writes a whole payload at once.
    public func addPayload(_ bytes: UnsafeRawBufferPointer, compression: PayloadCompression = .none,
                           zstdLevel: Int = 3) throws -> PayloadLocation {
        try beginPayload(rawLength: bytes.count, compression: compression, zstdLevel: zstdLevel)
        try appendPayload(bytes)
        return try endPayload()
    }

    /// Writes the manifest and header, syncs, and renames the file onto the output path.
    public func finish(manifest: BundleManifest) throws {
        guard current == nil else { throw FormatError("bundle writer: payload not finished") }
        do {
            try out.appendZeros((alignment - out.position % alignment) % alignment)
            let manifestOffset = out.position
            let json = [UInt8](try manifest.encoded())
            try out.append(json)
            let header = BundleHeader(manifestOffset: manifestOffset, manifestLength: json.count, fileLength: out.position,
                                      manifestCRC: json.withUnsafeBytes { CRC32C.checksum($0) }, alignment: alignment)
            try out.write(header.encoded(), at: 0)
            try out.commit(renamingTo: outputPath)
            finished = true
        } catch {
            abort()
            throw error
        }
    }

    /// Removes the temporary file; nothing is left at the output path.
    public func abort() {
        out.discard()
        finished = true
    }

    private func compress(_ bytes: UnsafeRawBufferPointer, end: Bool, crc: inout CRC32C) throws {
        guard let cctx else { throw FormatError("zstd: no compression context") }
        var input = ZSTD_inBuffer(src: bytes.baseAddress, size: bytes.count, pos: 0)
        let capacity = zstdOut.count
        while true {
            let (remaining, produced): (Int, Int) = try zstdOut.withUnsafeMutableBytes { buf in
                var output = ZSTD_outBuffer(dst: buf.baseAddress, size: capacity, pos: 0)
                let r = ZSTD_compressStream2(cctx, &output, &input, end ? ZSTD_e_end : ZSTD_e_continue)
                try zstdCheck(r)
                return (r, output.pos)
            }
            if produced > 0 {
                try zstdOut.withUnsafeBytes { buf in
                    let chunk = UnsafeRawBufferPointer(rebasing: buf[0..<produced])
                    crc.update(chunk)
                    try out.append(chunk)
                }
            }
            let done = end ? remaining == 0 : input.pos == input.size
            if done { break }
        }
    }

    private func zstdCheck(_ code: Int) throws {
        if ZSTD_isError(code) != 0 { throw FormatError("zstd: \(String(cString: ZSTD_getErrorName(code)))") }
    }

}
