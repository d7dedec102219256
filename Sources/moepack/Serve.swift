import ArgumentParser
import Foundation
import MoEServe

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a model over an OpenAI-compatible HTTP API (see docs/serving.md).",
        discussion: """
        Endpoints: GET /v1/models, POST /v1/completions, POST /v1/chat/completions, POST /tokenize, POST /detokenize, \
        GET /health, GET /metrics.

        Concurrent requests share one batched decode loop. SIGTERM or SIGINT stops accepting requests, \
        lets running ones finish (up to --shutdown-grace seconds) and exits.
        """)

    @Argument(help: "Checkpoint directory or .mpk bundle, with its tokenizer.")
    var model: String

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one).")
    var port = 8180

    @Option(help: "Most sequences decoding together in one batch.")
    var maxBatch = 8

    @Option(help: "Most tokens (prompt + completion) per request; defaults to the model's context length.")
    var maxContext: Int?

    @Option(help: "Most requests waiting for a place in the batch; more are answered 503.")
    var maxQueue = 64

    @Option(help: "Largest request body in bytes; larger ones are answered 413.")
    var maxBodyBytes = 1 << 20

    @Option(help: "Completion length when a request sets no max_tokens.")
    var defaultMaxTokens = 256

    @Option(help: "Prompt tokens prefilled per decode step, so long prompts do not stall running requests.")
    var prefillChunk = 64

    @Option(help: "Seconds in-flight requests may run after SIGTERM before they are cancelled.")
    var shutdownGrace = 30.0

    @Option(help: "Model id clients send in \"model\"; defaults to the file or directory name.")
    var name: String?

    @Option(help: ArgumentHelp("Require 'Authorization: Bearer KEY' on every request (else 401) but /health and /metrics. Defaults to the MOEPACK_API_KEY environment variable, which keeps the key out of the process list.", valueName: "key"))
    var apiKey: String?

    @Option(help: "Most open connections; further clients wait to be accepted.")
    var maxConnections = 512

    @Option(help: "Seconds before a connection with no request in progress (or a request head still arriving) is closed.")
    var headerTimeout = 30

    @Option(help: "Seconds a request body may take to arrive after its head; slower ones get 408.")
    var bodyTimeout = 60

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535") }
        guard maxBatch >= 1 else { throw ValidationError("--max-batch must be at least 1") }
        guard maxQueue >= 0 else { throw ValidationError("--max-queue must be >= 0") }
        if let maxContext, maxContext < 2 { throw ValidationError("--max-context must be at least 2") }
        guard maxBodyBytes >= 1024 else { throw ValidationError("--max-body-bytes must be at least 1024") }
        guard defaultMaxTokens >= 1 else { throw ValidationError("--default-max-tokens must be at least 1") }
        guard prefillChunk >= 1 else { throw ValidationError("--prefill-chunk must be at least 1") }
        guard shutdownGrace >= 0, shutdownGrace.isFinite else { throw ValidationError("--shutdown-grace must be >= 0") }
        if apiKey?.isEmpty == true { throw ValidationError("--api-key must not be empty") }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be at least 1") }
        guard (1...86400).contains(headerTimeout) else { throw ValidationError("--header-timeout must be 1 to 86400 seconds") }
        guard (1...86400).contains(bodyTimeout) else { throw ValidationError("--body-timeout must be 1 to 86400 seconds") }
    }

    @OptionGroup var cache: CacheOptions
    @OptionGroup var threading: ThreadOptions

    func run() async throws {
        threading.apply()
        let served = try ServedModel.load(path: model, name: name, cachePrecision: cache.precision)
        let options = ServerOptions(host: host, port: port, maxBatch: maxBatch, maxContext: maxContext,
                                    maxQueue: maxQueue, maxBodyBytes: maxBodyBytes, defaultMaxTokens: defaultMaxTokens,
                                    prefillChunk: prefillChunk, shutdownGraceSeconds: shutdownGrace,
                                    apiKey: apiKey ?? ProcessInfo.processInfo.environment["MOEPACK_API_KEY"].flatMap { $0.isEmpty ? nil : $0 },
                                    maxConnections: maxConnections, headerTimeoutSeconds: Int64(headerTimeout),
                                    bodyTimeoutSeconds: Int64(bodyTimeout))
        let server = OpenAIServer(model: served, options: options)
        let host = host
        try await server.run { port in
            let auth = options.apiKey == nil ? "" : " (API key required)"
            FileHandle.standardOutput.write(Data("moepack serve: model \(served.name) on http://\(host):\(port)\(auth)\n".utf8))
        }
    }
}
