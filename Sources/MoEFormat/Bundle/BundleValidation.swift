/// Structural checks on a decoded manifest, so that no later read can leave the file or
/// misread a payload: offsets, lengths, alignment, overlap, shapes and sizes per format.
enum BundleValidation {
    static func check(_ manifest: BundleManifest, header: BundleHeader, name: String) throws {
        guard manifest.alignment == header.alignment else {
            throw FormatError("\(name): manifest alignment \(manifest.alignment) does not match the header (\(header.alignment))")
        }
        var sections: [(range: Range<Int>, what: String)] = []
        for tensor in manifest.tensors {
            let what = "tensor \(tensor.name)"
            try checkLocation(tensor.payload, what: what, header: header, name: name)
            try checkShape(tensor, name: name)
            sections.append((tensor.payload.offset..<(tensor.payload.offset + tensor.payload.length), what))
        }
        for file in manifest.files {
            let what = "file \(file.name)"
            try checkLocation(file.payload, what: what, header: header, name: name)
            sections.append((file.payload.offset..<(file.payload.offset + file.payload.length), what))
        }
        sections.sort { $0.range.lowerBound < $1.range.lowerBound }
        for (a, b) in zip(sections, sections.dropFirst()) where b.range.lowerBound < a.range.upperBound {
            throw FormatError("\(name): \(a.what) and \(b.what) overlap")
        }
        if let pruning = manifest.pruning {
            for (layer, kept) in pruning {
                guard let l = Int(layer), l >= 0 else { throw FormatError("\(name): pruning map has an invalid layer key \(layer)") }
                guard !kept.isEmpty, kept.allSatisfy({ $0 >= 0 }), Set(kept).count == kept.count else {
                    throw FormatError("\(name): pruning map for layer \(l) is not a list of distinct expert ids")
                }
            }
        }
    }

    private static func checkLocation(_ p: PayloadLocation, what: String, header: BundleHeader, name: String) throws {
        let end = p.offset.addingReportingOverflow(p.length)
        guard p.offset >= BundleFormat.headerSize, p.length >= 0, !end.overflow, end.partialValue <= header.manifestOffset else {
            throw FormatError("\(name): \(what) at [\(p.offset), +\(p.length)) points outside the payload area (\(BundleFormat.headerSize)..<\(header.manifestOffset))")
        }
        guard p.offset % header.alignment == 0 else {
            throw FormatError("\(name): \(what) offset \(p.offset) is not aligned to \(header.alignment) bytes")
        }
        guard p.rawLength >= 0 else { throw FormatError("\(name): \(what) has a negative size") }
        if p.compression == .none, p.rawLength != p.length {
            throw FormatError("\(name): \(what) is uncompressed but its sizes differ (\(p.length) stored, \(p.rawLength) raw)")
        }
        // A zstd frame cannot expand data by more than 128 KiB blocks' worth; refuse absurd raw
        // sizes before any allocation.
        if p.compression == .zstd, p.rawLength / 1024 > max(p.length, 1) {
            throw FormatError("\(name): \(what) claims \(p.rawLength) bytes from \(p.length) compressed bytes")
        }
    }

    private static func checkShape(_ t: BundleTensor, name: String) throws {
        let what = "tensor \(t.name)"
        guard !t.shape.isEmpty, t.shape.count <= 2, t.shape.allSatisfy({ $0 > 0 }) else {
            throw FormatError("\(name): \(what) has an invalid shape \(t.shape)")
        }
        let expected: Int?
        if t.shape.count == 2 {
            expected = t.format.matrixBytes(rows: t.shape[0], cols: t.shape[1])
        } else {
            guard t.format == .f32 else { throw FormatError("\(name): \(what) is 1-D but stored as \(t.format.rawValue), not f32") }
            expected = t.format.matrixBytes(rows: 1, cols: t.shape[0])
        }
        guard let expected else {
            throw FormatError("\(name): \(what) shape \(t.shape) cannot be stored as \(t.format.rawValue)")
        }
        guard expected == t.payload.rawLength else {
            throw FormatError("\(name): \(what) has \(t.payload.rawLength) bytes, but \(t.shape) in \(t.format.rawValue) needs \(expected)")
        }
    }
}
