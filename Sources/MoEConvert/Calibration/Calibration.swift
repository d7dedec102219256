import Foundation
import MoEFormat
import MoERuntime
import MoETokenizer

/// `moepack calibrate` as a library call: model path and data file in, statistics out.
public enum Calibration {
    public struct Options: Sendable {
        public var context = Calibrator.defaultContext
        public var maxTokens = Calibrator.defaultMaxTokens
        public var engine = Calibrator.Engine.layerByLayer(memoryBudget: Calibrator.defaultMemoryBudget)
        public init(context: Int = Calibrator.defaultContext, maxTokens: Int = Calibrator.defaultMaxTokens,
                    engine: Calibrator.Engine = .layerByLayer(memoryBudget: Calibrator.defaultMemoryBudget)) {
            self.context = context
            self.maxTokens = maxTokens
            self.engine = engine
        }
    }

    /// Calibrates the checkpoint or bundle at `modelPath` on `data`; `progress` is called as
    /// the work advances.
    public static func run(modelPath: String, data: URL, options: Options = Options(),
                           progress: ((Calibrator.Progress) -> Void)? = nil) throws -> CalibrationStats {
        try run(ModelSource(path: modelPath), data: data, options: options, progress: progress)
    }

    /// `run(modelPath:...)` on an opened model.
    public static func run(_ source: ModelSource, data: URL, options: Options = Options(),
                           progress: ((Calibrator.Progress) -> Void)? = nil) throws -> CalibrationStats {
        let documents = try CalibrationData.load(data)
        guard !source.config.moeLayers.isEmpty else {
            throw CalibrationError("the model has no mixture-of-experts layers to calibrate")
        }
        let weights = try source.weights()
        let tokenizer = try source.tokenizer()
        let windows = try Calibrator.windows(documents.map { try tokens($0, tokenizer) }, context: options.context,
                                             maxTokens: options.maxTokens)
        let model = try ErnieModel(weights: weights)
        return try Calibrator.run(model: model, weights: weights, windows: windows, source: data.lastPathComponent,
                                  engine: options.engine, progress: progress)
    }

    /// Token ids of one document: plain text as is (no BOS), a conversation through the chat
    /// template (which supplies its own begin token).
    static func tokens(_ document: CalibrationDocument, _ tokenizer: Tokenizer) throws -> [Int32] {
        switch document {
        case .text(let text): tokenizer.encode(text)
        case .chat(let turns):
            try tokenizer.encodeChat(turns.map { ChatMessage(role: $0.role, content: $0.content) }, addGenerationPrompt: false)
        }
    }
}
