import Foundation
import MoERuntime

/// The model a server answers for, under the name clients use.
public struct ServedModel: Sendable {
    /// The id clients put in "model" (GET /v1/models lists it).
    public var name: String
    /// Weights, tokenizer (with its chat format) and stop ids.
    public var language: LanguageModel
    /// Seconds since 1970 when the model was loaded ("created" in /v1/models).
    public var created: Int

    public init(name: String, language: LanguageModel) {
        self.name = name
        self.language = language
        created = Int(Date().timeIntervalSince1970)
    }

    /// Opens MODEL with its tokenizer and names it after the file or directory unless `name` is given.
    public static func load(path: String, name: String? = nil, cachePrecision: KVCache.Precision? = nil) throws -> ServedModel {
        let language = try LanguageModel.load(at: path, cachePrecision: cachePrecision)
        let id = name ?? URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        return ServedModel(name: id, language: language)
    }
}
