import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import MoERuntime
import NIOCore
import ServiceLifecycle

/// The OpenAI-compatible HTTP server: routes, request handling and the batch scheduler behind it.
public final class OpenAIServer: Sendable {
    public let served: ServedModel
    public let options: ServerOptions
    public let scheduler: BatchScheduler
    public let metrics: ServerMetrics
    /// Most tokens (prompt + completion) one request may hold.
    public let contextLimit: Int

    static let endpoints = ["/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions",
                            "/tokenize", "/detokenize"]

    public init(model: ServedModel, options: ServerOptions = ServerOptions()) {
        served = model
        self.options = options
        let metrics = ServerMetrics()
        self.metrics = metrics
        scheduler = BatchScheduler(model: model.language,
                                   limits: .init(maxBatch: options.maxBatch, maxQueue: options.maxQueue,
                                                 prefillChunk: options.prefillChunk),
                                   metrics: metrics)
        let modelLimit = model.language.contextLength
        contextLimit = max(1, min(options.maxContext ?? modelLimit, modelLimit))
    }

    /// The Hummingbird application, with the scheduler as one of its services.
    /// `onServerRunning` receives the bound port (useful with port 0).
    public func makeApplication(logger: Logger = Logger(label: "moepack.serve"),
                                onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in })
        -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self)
        router.middlewares.add(OpenAIErrorMiddleware<BasicRequestContext>(metrics: metrics))
        if let key = options.apiKey { router.middlewares.add(APIKeyMiddleware<BasicRequestContext>(key: key)) }
        router.get("/health") { _, _ in self.health() }
        router.get("/metrics") { _, _ in self.metricsResponse() }
        router.get("/v1/models") { _, _ in jsonResponse(.object(["object": .string("list"), "data": .array([self.modelCard])])) }
        router.get("/v1/models/{id}") { _, context in
            let id = context.parameters.get("id") ?? ""
            guard id == self.served.name else { throw APIError.modelNotFound(id) }
            return jsonResponse(self.modelCard)
        }
        router.post("/v1/completions") { request, _ in try await self.completions(request) }
        router.post("/v1/chat/completions") { request, _ in try await self.chatCompletions(request) }
        router.post("/tokenize") { request, _ in try await self.tokenize(request) }
        router.post("/detokenize") { request, _ in try await self.detokenize(request) }
        // Connection limits: at most `maxConnections` open (more wait in the accept backlog); a
        // connection with no request in progress (including one whose request head is still
        // trickling in) is closed after `headerTimeoutSeconds`; a body must arrive within
        // `bodyTimeoutSeconds` of its head (ConnectionGuard).
        let metrics = self.metrics, bodyTimeout = TimeAmount.seconds(options.bodyTimeoutSeconds)
        let http1 = HTTP1Channel.Configuration(
            additionalChannelHandlers: [ConnectionGuard(bodyTimeout: bodyTimeout, onReject: { status in
                metrics.recordRequest(endpoint: "other", status: status)
            })],
            idleTimeout: .seconds(options.headerTimeoutSeconds))
        var app = Application(router: router,
                              server: .http1(configuration: http1),
                              configuration: .init(address: .hostname(options.host, port: options.port),
                                                   serverName: "moepack",
                                                   availableConnectionsDelegate: MaximumAvailableConnections(options.maxConnections)),
                              onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
                              logger: logger)
        app.addServices(SchedulerService(scheduler: scheduler))
        return app
    }

    /// Serves until SIGTERM or SIGINT. Then new requests are refused (503), in-flight ones finish
    /// (or are cancelled after `shutdownGraceSeconds`), and this returns.
    public func run(logger: Logger = Logger(label: "moepack.serve"),
                    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let app = makeApplication(logger: logger, onServerRunning: onServerRunning)
        // Services stop in reverse order: first the drain (refuse new work, arm the grace timer),
        // then the application (stop accepting connections, wait for responses, stop the scheduler).
        let drain = DrainOnShutdown(scheduler: scheduler, graceSeconds: options.shutdownGraceSeconds, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app, drain],
                                                      gracefulShutdownSignals: [.sigterm, .sigint],
                                                      logger: logger))
        try await group.run()
    }

    var modelCard: JSONValue {
        .object(["id": .string(served.name), "object": .string("model"), "created": .int(served.created),
                 "owned_by": .string("moepack"), "max_model_len": .int(contextLimit)])
    }

    func health() -> Response {
        let load = scheduler.load
        return jsonResponse(.object(["status": .string("ok"), "running": .int(load.running), "queued": .int(load.queued)]))
    }

    func metricsResponse() -> Response {
        let load = scheduler.load
        let text = metrics.render(running: load.running, queued: load.queued)
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
}

/// Starts the scheduler thread with the application and stops it once the HTTP server is down.
struct SchedulerService: Service {
    let scheduler: BatchScheduler

    func run() async throws {
        scheduler.start()
        do {
            try await gracefulShutdown()
        } catch {
            scheduler.cancelAll(reason: APIError.shuttingDownMessage)
        }
        await scheduler.stop()
    }
}

/// On SIGTERM: refuse new generations, and cancel what still runs after the grace period.
struct DrainOnShutdown: Service {
    let scheduler: BatchScheduler
    let graceSeconds: Double
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        let load = scheduler.load
        logger.info("shutting down: \(load.running) running and \(load.queued) queued requests may finish for \(graceSeconds) s")
        scheduler.beginDraining()
        let scheduler = scheduler, grace = graceSeconds
        Task.detached {
            try? await Task.sleep(for: .seconds(grace))
            scheduler.cancelAll(reason: APIError.shuttingDownMessage)
        }
    }
}

/// Answers every failure as OpenAI error JSON and counts requests by endpoint and status.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        let response: Response
        do {
            response = try await next(request, context)
        } catch let error as APIError {
            response = error.response
        } catch let error as HTTPError where error.status == .notFound || error.status == .methodNotAllowed {
            let known = OpenAIServer.endpoints.contains(path) || path.hasPrefix("/v1/models/")
            response = (known ? APIError.methodNotAllowed(request.method.rawValue, path) : APIError.notFound(path)).response
        } catch is NIOTooManyBytesError {
            response = APIError(status: .contentTooLarge, message: "the request body is too large",
                                type: "invalid_request_error", code: "request_too_large").response
        } catch let error as HTTPError {
            response = APIError(status: error.status, message: error.body ?? error.status.reasonPhrase,
                                type: "invalid_request_error").response
        } catch {
            response = APIError.internalError("\(error)").response
        }
        let endpoint = OpenAIServer.endpoints.contains(path) ? path : (path.hasPrefix("/v1/models/") ? "/v1/models/{id}" : "other")
        metrics.recordRequest(endpoint: endpoint, status: Int(response.status.code))
        return response
    }
}

/// With `--api-key`: requests to anything but /health and /metrics carry
/// `Authorization: Bearer <key>` or get a 401.
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let expected: [UInt8]

    init(key: String) { expected = Array("Bearer \(key)".utf8) }

    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        if !["/health", "/metrics"].contains(request.uri.path) {
            guard let header = request.headers[.authorization], constantTimeEqual(Array(header.utf8), expected) else {
                throw APIError.invalidAPIKey
            }
        }
        return try await next(request, context)
    }
}

/// Compares without stopping at the first difference, so the time taken does not tell how much
/// of a guessed key was right.
func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var difference = UInt8(a.count == b.count ? 0 : 1)
    for i in 0..<max(a.count, b.count) {
        difference |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
    }
    return difference == 0
}
