import Foundation
import MoEFormat
import TOMLKit

/// A converter stage a profile can list, in the order they run.
public enum ConvertStage: String, Sendable, Codable, CaseIterable {
    case prune
    case quantize
    case pack
}

/// How pruning ranks experts (see `PruningCriterion`).
public typealias PruneCriterion = PruningCriterion

/// How the prune ratio is spread over the MoE layers.
public enum PruneBudget: String, Sendable, Codable, CaseIterable {
    /// The same ratio in every layer.
    case perLayer = "per_layer"
    /// ratio × all routed experts, lowest scores across layers first.
    case global
}

public struct PruneSettings: Sendable, Codable, Equatable {
    /// Fraction of routed experts removed per MoE layer, in [0, 1).
    public var ratio: Double
    public var criterion: PruneCriterion
    public var budget: PruneBudget

    public init(ratio: Double, criterion: PruneCriterion, budget: PruneBudget = .perLayer) {
        self.ratio = ratio
        self.criterion = criterion
        self.budget = budget
    }
}

/// A deployment profile: which storage format each tensor class gets, which stages run and
/// how payloads are compressed. Read from TOML (docs/profiles.md); every unknown key or value
/// is an error naming it.
public struct Profile: Sendable, Equatable {
    public var name: String
    public var description: String
    public var stages: [ConvertStage]
    /// Format per 2-D weight class. Router, norms and biases are always f32.
    public var formats: [TensorClass: WeightFormat]
    /// Used when no int4 group size divides a tensor's column count.
    public var int4Fallback: WeightFormat
    public var compression: PayloadCompression
    public var zstdLevel: Int
    public var prune: PruneSettings?
    /// The TOML text the profile was read from (stored in the bundle).
    public var source: String

    /// Classes whose weights are never quantized.
    public static let fixedF32: Set<TensorClass> = [.router, .norms, .biases]
    /// Classes a profile must give a format.
    public static let quantizableClasses: [TensorClass] = [.embeddings, .attention, .denseMLP, .sharedExperts, .routedExperts, .lmHead]

    /// The format a tensor of this class with `cols` columns is stored in. A grouped format whose
    /// group does not divide `cols` steps down to the largest smaller group of its family that
    /// does (same rule, other group), then to `int4Fallback`.
    public func format(for tensorClass: TensorClass, cols: Int, is2D: Bool) -> WeightFormat {
        guard is2D, !Self.fixedF32.contains(tensorClass), let f = formats[tensorClass] else { return .f32 }
        guard let group = f.groupSize else { return f }
        let smaller: [WeightFormat] = f.family.filter { ($0.groupSize ?? Int.max) <= group }
        let candidates = smaller.sorted { ($0.groupSize ?? 0) > ($1.groupSize ?? 0) }
        return candidates.first { $0.rowBytes(cols: cols) != nil } ?? int4Fallback
    }
}

public struct ProfileError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Profile {
    /// Parses a profile; `origin` names it in error messages.
    public init(toml: String, origin: String) throws {
        let table: TOMLTable
        do { table = try TOMLTable(string: toml) } catch let error as TOMLParseError {
            throw ProfileError("\(origin): invalid TOML at line \(error.source.begin.line): \(error.description)")
        }
        let reader = TableReader(table: table, path: "", origin: origin)
        try reader.allowKeys(["name", "description", "stages", "formats", "quantize", "pack", "prune"])
        name = try reader.string("name")
        description = try reader.optionalString("description") ?? ""
        let stageNames = try reader.stringArray("stages")
        stages = try stageNames.map { s in
            guard let stage = ConvertStage(rawValue: s) else {
                throw ProfileError("\(origin): unknown stage \"\(s)\" in stages (known: \(ConvertStage.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return stage
        }
        let order = stages.compactMap { ConvertStage.allCases.firstIndex(of: $0) }
        guard stages.contains(.quantize), stages.last == .pack, order == order.sorted(), Set(stages).count == stages.count else {
            throw ProfileError("\(origin): stages must be [\"prune\",] \"quantize\", \"pack\" in that order, got \(stageNames)")
        }

        let formatsTable = try reader.table("formats")
        let classNames = Profile.quantizableClasses.map(\.rawValue) + Profile.fixedF32.map(\.rawValue).sorted()
        try formatsTable.allowKeys(classNames)
        var formats: [TensorClass: WeightFormat] = [:]
        for cls in Profile.quantizableClasses {
            formats[cls] = try formatsTable.format(cls.rawValue)
        }
        for cls in Profile.fixedF32 {
            if let value = try formatsTable.optionalString(cls.rawValue), value != "f32" {
                throw ProfileError("\(origin): formats.\(cls.rawValue) = \"\(value)\": \(cls.rawValue) tensors are never quantized, only \"f32\" is allowed")
            }
        }
        self.formats = formats

        let quantize = try reader.optionalTable("quantize")
        try quantize?.allowKeys(["int4_fallback"])
        int4Fallback = try quantize?.optionalFormat("int4_fallback") ?? .int8
        guard int4Fallback.groupSize == nil else {
            throw ProfileError("\(origin): quantize.int4_fallback must not be an int4 format")
        }

        let pack = try reader.optionalTable("pack")
        try pack?.allowKeys(["compression", "zstd_level"])
        let compressionName = try pack?.optionalString("compression") ?? "none"
        guard let compression = PayloadCompression(rawValue: compressionName) else {
            throw ProfileError("\(origin): unknown value \"\(compressionName)\" for pack.compression (known: none, zstd)")
        }
        self.compression = compression
        zstdLevel = try pack?.optionalInt("zstd_level") ?? 3
        guard (1...19).contains(zstdLevel) else {
            throw ProfileError("\(origin): pack.zstd_level \(zstdLevel) is outside 1...19")
        }

        if let pruneTable = try reader.optionalTable("prune") {
            try pruneTable.allowKeys(["ratio", "criterion", "budget"])
            let ratio = try pruneTable.double("ratio")
            guard ratio >= 0, ratio < 1 else { throw ProfileError("\(origin): prune.ratio \(ratio) is outside [0, 1)") }
            let criterionName = try pruneTable.optionalString("criterion") ?? PruneCriterion.default.rawValue
            guard let criterion = PruneCriterion(rawValue: criterionName) else {
                throw ProfileError("\(origin): unknown value \"\(criterionName)\" for prune.criterion (known: \(PruneCriterion.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            let budgetName = try pruneTable.optionalString("budget") ?? PruneBudget.perLayer.rawValue
            guard let budget = PruneBudget(rawValue: budgetName) else {
                throw ProfileError("\(origin): unknown value \"\(budgetName)\" for prune.budget (known: \(PruneBudget.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            prune = PruneSettings(ratio: ratio, criterion: criterion, budget: budget)
        } else {
            prune = nil
        }
        guard (prune != nil) == stages.contains(.prune) else {
            throw ProfileError("\(origin): a \"prune\" stage needs a [prune] table and a [prune] table needs the \"prune\" stage")
        }
        source = toml
    }

    /// Resolves `--profile`: an existing file path (or anything ending in .toml) is read from
    /// disk, otherwise the name of a shipped profile.
    public static func load(_ nameOrPath: String) throws -> Profile {
        if nameOrPath.hasSuffix(".toml") || nameOrPath.contains("/") || FileManager.default.fileExists(atPath: nameOrPath) {
            guard let data = FileManager.default.contents(atPath: nameOrPath), let text = String(data: data, encoding: .utf8) else {
                throw ProfileError("cannot read profile file \(nameOrPath)")
            }
            return try Profile(toml: text, origin: nameOrPath)
        }
        guard let text = ShippedProfiles.all[nameOrPath] else {
            throw ProfileError("unknown profile \"\(nameOrPath)\" (shipped: \(ShippedProfiles.all.keys.sorted().joined(separator: ", ")); or give a path to a .toml file)")
        }
        return try Profile(toml: text, origin: "profile \(nameOrPath)")
    }
}

/// Typed, strict access to one TOML table.
private struct TableReader {
    let table: TOMLTable
    let path: String
    let origin: String

    private func key(_ k: String) -> String { path.isEmpty ? k : "\(path).\(k)" }

    func allowKeys(_ allowed: [String]) throws {
        for k in table.keys.sorted() where !allowed.contains(k) {
            throw ProfileError("\(origin): unknown key \"\(key(k))\" (allowed here: \(allowed.joined(separator: ", ")))")
        }
    }

    func optionalString(_ k: String) throws -> String? {
        guard let v = table[k] else { return nil }
        guard let s = v.string else { throw ProfileError("\(origin): \(key(k)) must be a string") }
        return s
    }

    func string(_ k: String) throws -> String {
        guard let s = try optionalString(k) else { throw ProfileError("\(origin): missing key \"\(key(k))\"") }
        return s
    }

    func optionalInt(_ k: String) throws -> Int? {
        guard let v = table[k] else { return nil }
        guard let i = v.int else { throw ProfileError("\(origin): \(key(k)) must be an integer") }
        return i
    }

    func double(_ k: String) throws -> Double {
        guard let v = table[k] else { throw ProfileError("\(origin): missing key \"\(key(k))\"") }
        if let d = v.double { return d }
        if let i = v.int { return Double(i) }
        throw ProfileError("\(origin): \(key(k)) must be a number")
    }

    func stringArray(_ k: String) throws -> [String] {
        guard let v = table[k] else { throw ProfileError("\(origin): missing key \"\(key(k))\"") }
        guard let array = v.array else { throw ProfileError("\(origin): \(key(k)) must be an array of strings") }
        return try array.map { element in
            guard let s = element.string else { throw ProfileError("\(origin): \(key(k)) must be an array of strings") }
            return s
        }
    }

    func optionalTable(_ k: String) throws -> TableReader? {
        guard let v = table[k] else { return nil }
        guard let t = v.table else { throw ProfileError("\(origin): \(key(k)) must be a table") }
        return TableReader(table: t, path: key(k), origin: origin)
    }

    func table(_ k: String) throws -> TableReader {
        guard let t = try optionalTable(k) else { throw ProfileError("\(origin): missing table [\(key(k))]") }
        return t
    }

    func optionalFormat(_ k: String) throws -> WeightFormat? {
        guard let s = try optionalString(k) else { return nil }
        guard let f = WeightFormat(rawValue: s) else {
            throw ProfileError("\(origin): unknown value \"\(s)\" for \(key(k)) (known formats: \(WeightFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return f
    }

    func format(_ k: String) throws -> WeightFormat {
        guard let f = try optionalFormat(k) else { throw ProfileError("\(origin): missing key \"\(key(k))\"") }
        return f
    }
}
