import MoEFormat
import MoEKernels
import MoERuntime

/// Quantizes one checkpoint tensor in row blocks and streams it into the bundle writer.
struct TensorPacker {
    let reader: TensorReader
    let writer: BundleWriter
    let profile: Profile
    private var scratch: [UInt8] = []
    private var floats: [Float] = []
    private var packed: [UInt8] = []

    init(reader: TensorReader, writer: BundleWriter, profile: Profile) {
        self.reader = reader
        self.writer = writer
        self.profile = profile
    }

    /// `keptExperts` is the layer's pruning map: it selects router rows and correction-bias entries.
    mutating func pack(_ spec: TensorSpec, keptExperts: [Int]?) throws -> BundleTensor {
        let isRouterGate = spec.tensorClass == .router && spec.name.hasSuffix(".gate.weight")
        let isCorrectionBias = spec.name.hasSuffix(".e_score_correction_bias")
        var shape = spec.shape
        // Source rows to read (nil: all, contiguous).
        var rowSelection: [Int]? = nil
        if let kept = keptExperts, isRouterGate {
            rowSelection = kept
            shape[0] = kept.count
        }
        if let kept = keptExperts, isCorrectionBias {
            shape[shape.count - 1] = kept.count
        }
        let is2D = shape.count == 2 && !isCorrectionBias
        let rows = is2D ? shape[0] : 1
        let cols = is2D ? shape[1] : shape.reduce(1, *)
        let format = profile.format(for: spec.tensorClass, cols: cols, is2D: is2D)
        guard let rowBytes = format.rowBytes(cols: cols), let total = format.matrixBytes(rows: rows, cols: cols) else {
            throw ProfileError("tensor \(spec.name) [\(rows), \(cols)] cannot be stored as \(format.rawValue)")
        }
        try writer.beginPayload(rawLength: total, compression: profile.compression, zstdLevel: profile.zstdLevel)

        if isCorrectionBias, let kept = keptExperts {
            // Tiny: read the whole bias and keep the selected entries.
            let all = spec.shape.reduce(1, *)
            var values = [Float](repeating: 0, count: all)
            try values.withUnsafeMutableBufferPointer { try reader.read(spec.name, start: 0, count: all, into: $0.baseAddress!, scratch: &scratch) }
            let selected = kept.map { values[$0] }
            try emit(selected, rows: 1, cols: cols, format: format, rowBytes: rowBytes, name: spec.name, firstRow: 0)
        } else {
            let blockRows = max(1, min(rows, Converter.blockBytes / max(1, cols * 4)))
            if floats.count < blockRows * cols { floats = [Float](repeating: 0, count: blockRows * cols) }
            var start = 0
            while start < rows {
                let n = min(blockRows, rows - start)
                try floats.withUnsafeMutableBufferPointer { buf in
                    if let selection = rowSelection {
                        for i in 0..<n {
                            try reader.read(spec.name, start: selection[start + i] * cols, count: cols,
                                            into: buf.baseAddress! + i * cols, scratch: &scratch)
                        }
                    } else {
                        try reader.read(spec.name, start: start * cols, count: n * cols, into: buf.baseAddress!, scratch: &scratch)
                    }
                }
                try emit(floats, rows: n, cols: cols, format: format, rowBytes: rowBytes, name: spec.name, firstRow: start)
                start += n
            }
        }
        let location = try writer.endPayload()
        return BundleTensor(name: spec.name, tensorClass: spec.tensorClass, format: format, shape: shape,
                            layer: spec.layer, expert: spec.expert, payload: location)
    }

    /// Quantizes `rows` rows held in `values` and appends them to the open payload.
    private mutating func emit(_ values: [Float], rows: Int, cols: Int, format: WeightFormat, rowBytes: Int,
                               name: String, firstRow: Int) throws {
        let bytes = rows * rowBytes
        if packed.count < bytes { packed = [UInt8](repeating: 0, count: bytes) }
        var badRow: Int64 = -1
        let status = values.withUnsafeBufferPointer { v in
            packed.withUnsafeMutableBytes { out in
                moe_quantize(format.id, v.baseAddress, Int64(rows), Int64(cols), out.baseAddress, bytes, &badRow)
            }
        }
        guard status == MOE_OK else {
            let row = badRow >= 0 ? " row \(firstRow + Int(badRow))" : ""
            throw ProfileError("cannot store tensor \(name)\(row) as \(format.rawValue): \(String(cString: moe_strerror(status)))")
        }
        try packed.withUnsafeBytes { try writer.appendPayload(UnsafeRawBufferPointer(rebasing: $0[0..<bytes])) }
    }
}
