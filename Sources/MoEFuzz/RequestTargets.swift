import Foundation
import MoEServe

enum RequestTargets {
    static func completion(_ data: Data) throws {
        let vocabulary = TokenizerTargets.tiny.vocabularySize
        let request = try RequestValidation.completion(body: data, vocabularySize: vocabulary)
        expect(request.prompts >= 1 && request.prompts * request.choices <= 64, "accepted \(request.prompts) prompts × \(request.choices)")
        for ids in request.promptTokens {
            expect(!ids.isEmpty && ids.allSatisfy { $0 >= 0 && Int($0) < vocabulary }, "accepted token prompt \(ids)")
            TokenizerTargets.exercise(TokenizerTargets.tiny, ids: ids)
        }
        for text in request.promptTexts { TokenizerTargets.exercise(TokenizerTargets.tiny, text: text) }
        expect(request.stop.count <= 4, "accepted \(request.stop.count) stop strings")
    }

    static func chat(_ data: Data) throws {
        let request = try RequestValidation.chat(body: data)
        expect(!request.messages.isEmpty, "accepted a chat without messages")
        TokenizerTargets.exercise(TokenizerTargets.tiny, ids: (try? TokenizerTargets.tiny.encodeChat(request.messages)) ?? [])
    }
}
