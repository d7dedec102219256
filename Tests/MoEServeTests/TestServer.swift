import Foundation
import Logging
@testable import MoEServe
import MoERuntime
import MoETestSupport
import MoETokenizer
import ServiceLifecycle

/// Printable ASCII characters are their own ids (32..<127); 1 and 2 are beginning and end of
/// sequence; any other id reads as "[id]". Lets the server run on the fixture checkpoints, whose
/// 128-token vocabularies have no tokenizer of their own.
struct CharacterTokenizer: TextTokenizer {
    struct Unencodable: Error, CustomStringConvertible {
        let scalar: Unicode.Scalar
        var description: String { "cannot encode U+\(String(scalar.value, radix: 16, uppercase: true))" }
    }

    var bosTokenID: Int32? { 1 }
    var stopTokenIDs: Set<Int32> { [2] }

    /// A plain chat format: "role: content | " per message, then "assistant:".
    func chatPrompt(_ messages: [ChatMessage]) throws -> String {
        messages.map { "\($0.role): \($0.content) | " }.joined() + "assistant:"
    }

    func encode(_ text: String, addBOS: Bool, parseSpecialTokens: Bool) throws -> [Int32] {
        var ids: [Int32] = addBOS ? [1] : []
        for scalar in text.unicodeScalars {
            guard (32..<127).contains(scalar.value) else { throw Unencodable(scalar: scalar) }
            ids.append(Int32(scalar.value))
        }
        return ids
    }

    /// Like a tokenizer whose configuration adds BOS.
    func encodePrompt(_ text: String) throws -> [Int32] { try encode(text, addBOS: true, parseSpecialTokens: true) }

    func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        ids.map { id -> String in
            if (32..<127).contains(id) { return String(UnicodeScalar(UInt8(id))) }
            if skipSpecialTokens && (id == 1 || id == 2) { return "" }
            return "[\(id)]"
        }.joined()
    }
}

enum TestModels {
    /// A fixture checkpoint served as "fixture" with the character tokenizer and a plain chat format.
    static func fixture(_ name: String = "moe_basic") throws -> ServedModel {
        let model = try ModelLoader.model(at: Fixtures.checkpoint(name).path)
        let language = LanguageModel(model: model, tokenizer: CharacterTokenizer())
        return ServedModel(name: "fixture", language: language)
    }
}

/// An in-process server on an ephemeral loopback port.
final class TestServer: Sendable {
    let server: OpenAIServer
    let port: Int
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    private init(server: OpenAIServer, port: Int, group: ServiceGroup, task: Task<Void, any Error>) {
        self.server = server
        self.port = port
        self.group = group
        self.task = task
    }

    static func start(_ model: ServedModel, options: ServerOptions = ServerOptions(port: 0),
                      stepPause: Duration? = nil) async throws -> TestServer {
        var options = options
        options.host = "127.0.0.1"
        options.port = 0
        let server = OpenAIServer(model: model, options: options)
        server.scheduler.stepPause = stepPause
        var logger = Logger(label: "moepack.serve.test")
        logger.logLevel = .error
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = server.makeApplication(logger: logger) { port in continuation.yield(port) }
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let task = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw RawConnection.Failure(description: "server did not start") }
        return TestServer(server: server, port: port, group: group, task: task)
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = await task.result
    }

    /// Waits (bounded) until no sequence runs or waits.
    func waitUntilIdle(seconds: Double = 30) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let load = server.scheduler.load
            if load.running == 0 && load.queued == 0 { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}
