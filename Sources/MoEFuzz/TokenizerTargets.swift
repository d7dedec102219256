import Foundation
import MoETokenizer

enum TokenizerTargets {
    /// The built-in model's tokenizer files, read from the source tree.
    static let tinyModel = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("moepack/Resources/tiny-moe")

    static let tinyConfigFiles: [String: Data] = {
        var files: [String: Data] = [:]
        for name in Tokenizer.configFileNames {
            if let data = try? Data(contentsOf: tinyModel.appendingPathComponent(name)) { files[name] = data }
        }
        return files
    }()

    static let tinySentencePiece: SentencePieceTokenizer = {
        do {
            return try SentencePieceTokenizer(modelURL: tinyModel.appendingPathComponent("tokenizer.model"))
        } catch {
            fatalError("moepack-fuzz needs the built-in model's tokenizer.model: \(error)")
        }
    }()

    static let tiny: Tokenizer = {
        do {
            return try Tokenizer(sentencePiece: tinySentencePiece, configFiles: tinyConfigFiles)
        } catch {
            fatalError("moepack-fuzz cannot load the built-in model's tokenizer: \(error)")
        }
    }()

    /// Text with spaces, specials, accents, CJK, emoji, control and combining characters.
    static let sample = "  Hello,  world!\t<|begin_of_sentence|>User: é e\u{301} 中文 👩‍👩‍👧 \u{0}\r\n<|end_of_sentence|>x "

    static func model(_ data: Data) throws {
        let tokenizer = try Tokenizer(modelData: data, configFiles: tinyConfigFiles)
        exercise(tokenizer, text: sample)
    }

    /// The input as each of the optional JSON files in turn, next to the built-in model;
    /// rejected when no file name accepts it.
    static func config(_ data: Data) throws {
        var lastError: (any Error)?
        var accepted = false
        // The JSON side files; chat_template.jinja is a template, which the chat-template target covers.
        for name in Tokenizer.configFileNames where name.hasSuffix(".json") {
            do {
                exercise(try Tokenizer(sentencePiece: tinySentencePiece, configFiles: [name: data]), text: sample)
                accepted = true
            } catch {
                lastError = error
            }
        }
        if !accepted, let lastError { throw lastError }
    }

    /// Messages as records split by 0x1E, each "role 0x1F content" (no 0x1F: a user message);
    /// a first record starting with 0x1D sets the template's begin and end tokens instead.
    static func chatTemplate(_ data: Data) {
        var records = data.split(separator: 0x1E, omittingEmptySubsequences: false)
        var template = tiny.chatTemplate
        if let first = records.first, first.first == 0x1D {
            let tokens = first.dropFirst().split(separator: 0x1F, maxSplits: 1, omittingEmptySubsequences: false)
            template = ChatTemplate(beginToken: String(decoding: tokens[0], as: UTF8.self),
                                    endToken: tokens.count > 1 ? String(decoding: tokens[1], as: UTF8.self) : "")
            records.removeFirst()
        }
        let messages = records.map { record -> ChatMessage in
            let parts = record.split(separator: 0x1F, maxSplits: 1, omittingEmptySubsequences: false)
            if parts.count == 1 { return ChatMessage(role: "user", content: String(decoding: parts[0], as: UTF8.self)) }
            return ChatMessage(role: String(decoding: parts[0], as: UTF8.self), content: String(decoding: parts[1], as: UTF8.self))
        }
        for prompt in [true, false] {
            let text = template.render(messages: messages, addGenerationPrompt: prompt)
            expect(text.hasPrefix(template.beginToken), "rendered chat does not start with the begin token")
            exercise(tiny, text: text)
        }
        exercise(tiny, ids: (try? tiny.encodeChat(messages)) ?? [])
        // The input as a Jinja chat template: it parses and renders, or throws; it never crashes or hangs.
        if let source = String(validating: data, as: UTF8.self), let template = try? JinjaTemplate(source) {
            _ = try? template.render(["messages": .from(messages), "add_generation_prompt": .bool(true), "bos_token": .string("<s>")])
        }
    }

    static func exercise(_ tokenizer: Tokenizer, text: String) {
        for addBOS in [false, true] {
            for special in [true, false] {
                exercise(tokenizer, ids: tokenizer.encode(text, addBOS: addBOS, parseSpecialTokens: special))
            }
        }
        _ = tokenizer.sentencePiece?.encodeAsPieces(text)
        _ = tokenizer.sentencePiece?.normalize(text)
    }

    /// Every id an encoder produced must be a real token; decoding any id, valid or not, must not crash.
    static func exercise(_ tokenizer: Tokenizer, ids: [Int32]) {
        let size = tokenizer.vocabularySize
        for id in ids { expect(id >= 0 && Int(id) < size, "encode produced id \(id) outside 0..<\(size)") }
        _ = tokenizer.decode(ids)
        _ = tokenizer.decode(ids, skipSpecialTokens: true)
        var stream = tokenizer.makeStreamingDecoder()
        for id in ids { _ = stream.push(id) }
        _ = stream.finish()
        let edges: [Int32] = [-1, 0, 1, 2, 3, Int32(clamping: size - 1), Int32(clamping: size), Int32.max, Int32.min]
        _ = tokenizer.decode(edges)
        for id in edges {
            _ = tokenizer.tokenBytes(id)
            _ = tokenizer.sentencePiece?.piece(for: id)
            _ = tokenizer.sentencePiece?.score(for: id)
            _ = tokenizer.sentencePiece?.bytes(of: id)
        }
    }
}
