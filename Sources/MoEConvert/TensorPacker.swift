import MoEFormat
import MoEKernels
import MoERuntime

/// Quantizes one checkpoint tensor in row blocks and streams it into the bundle writer.
struct TensorPacker {
    let reader: TensorReader
    let writer: BundleWriter
    let profile: Profile
    var rounding: WeightRounding
    /// Per-tensor formats that override the profile's (a size plan).
    let formats: [String: WeightFormat]
    private var scratch: [UInt8] = []
    private var floats: [Float] = []
    private var packed: [UInt8] = []
    /// Rows of the tensors that error-compensating rounding could serve, and the rows where it
    /// was kept (the rest rounded to nearest).
    private(set) var compensableRows = 0
    private(set) var compensatedRows = 0

    init(reader: TensorReader, writer: BundleWriter, profile: Profile, rounding: WeightRounding = .nearest,
         formats: [String: WeightFormat] = [:]) {
        self.formats = formats
        self.reader = reader
        self.writer = writer
        self.profile = profile
        self.rounding = rounding
    }

    /// Every tensor is stored whole: pruned bundles keep the full router (docs/pruning.md) and
    /// simply omit the pruned experts' tensors, which the converter never asks for.
    mutating func pack(_ spec: TensorSpec) throws -> BundleTensor {
        let shape = spec.shape
        let is2D = shape.count == 2 && !spec.isVector
        let rows = is2D ? shape[0] : 1
        let cols = is2D ? shape[1] : shape.reduce(1, *)
        // Carried tensors keep their stored precision (f16 widens to f32, exactly).
        let format: WeightFormat
        if spec.tensorClass == .mtp {
            format = try is2D && reader.checkpoint.info(spec.name).dtype == .bf16 ? .bf16 : .f32
        } else {
            format = formats[spec.name] ?? profile.format(for: spec.tensorClass, cols: cols, is2D: is2D)
        }
        guard let rowBytes = format.rowBytes(cols: cols), let total = format.matrixBytes(rows: rows, cols: cols) else {
            throw ProfileError("tensor \(spec.name) [\(rows), \(cols)] cannot be stored as \(format.rawValue)")
        }
        try writer.beginPayload(rawLength: total, compression: profile.compression, zstdLevel: profile.zstdLevel)
        if is2D && spec.tensorClass != .mtp && rounding.compensates(spec, format: format) {
            // Compensated rounding carries each column's error into the later ones: the whole
            // tensor at once (one expert or projection).
            var w = [Float](repeating: 0, count: rows * cols)
            try w.withUnsafeMutableBufferPointer { try reader.read(spec.name, start: 0, count: rows * cols, into: $0.baseAddress!, scratch: &scratch) }
            let result: WeightRounding.Result
            do {
                result = try rounding.quantize(spec, values: w, rows: rows, cols: cols, format: format)
            } catch {
                throw ProfileError("cannot store tensor \(spec.name) as \(format.rawValue): \(error)")
            }
            compensableRows += rows
            compensatedRows += result.compensatedRows
            try result.bytes.withUnsafeBytes { try writer.appendPayload($0) }
            let location = try writer.endPayload()
            return BundleTensor(name: spec.name, tensorClass: spec.tensorClass, format: format, shape: shape,
                                layer: spec.layer, expert: spec.expert, payload: location)
        }
        let columnImportance = is2D && spec.tensorClass != .mtp ? rounding.importance?.importance(for: spec, cols: cols) : nil

        let blockRows = max(1, min(rows, Converter.blockBytes / max(1, cols * 4)))
        if floats.count < blockRows * cols { floats = [Float](repeating: 0, count: blockRows * cols) }
        var start = 0
        while start < rows {
            let n = min(blockRows, rows - start)
            try floats.withUnsafeMutableBufferPointer { buf in
                try reader.read(spec.name, start: start * cols, count: n * cols, into: buf.baseAddress!, scratch: &scratch)
            }
            try emit(floats, rows: n, cols: cols, format: format, rowBytes: rowBytes, importance: columnImportance,
                     name: spec.name, firstRow: start)
            start += n
        }
        let location = try writer.endPayload()
        return BundleTensor(name: spec.name, tensorClass: spec.tensorClass, format: format, shape: shape,
                            layer: spec.layer, expert: spec.expert, payload: location)
    }

    /// Quantizes `rows` rows held in `values` (weighting the scale search by `importance`, one
    /// value per column, when given) and appends them to the open payload.
    private mutating func emit(_ values: [Float], rows: Int, cols: Int, format: WeightFormat, rowBytes: Int,
                               importance: [Float]?, name: String, firstRow: Int) throws {
        let bytes = rows * rowBytes
        if packed.count < bytes { packed = [UInt8](repeating: 0, count: bytes) }
        var badRow: Int64 = -1
        let status = values.withUnsafeBufferPointer { v in
            packed.withUnsafeMutableBytes { out in
                importance.withOptionalBase { imp in
                    moe_quantize_weighted(format.id, v.baseAddress, Int64(rows), Int64(cols), imp, out.baseAddress, bytes, &badRow)
                }
            }
        }
        guard status == MOE_OK else {
            let row = badRow >= 0 ? " row \(firstRow + Int(badRow))" : ""
            throw ProfileError("cannot store tensor \(name)\(row) as \(format.rawValue): \(String(cString: moe_strerror(status)))")
        }
        try packed.withUnsafeBytes { try writer.appendPayload(UnsafeRawBufferPointer(rebasing: $0[0..<bytes])) }
    }
}

extension Optional where Wrapped == [Float] {
    /// The array's base address for a C call, NULL when there is no array.
    func withOptionalBase<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        switch self {
        case .some(let a): a.withUnsafeBufferPointer { body($0.baseAddress) }
        case .none: body(nil)
        }
    }
}
