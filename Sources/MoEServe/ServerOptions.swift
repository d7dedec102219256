/// Where the server listens and the limits it enforces.
public struct ServerOptions: Sendable {
    public var host: String
    /// 0 picks a free port (tests).
    public var port: Int
    /// Most sequences decoding together.
    public var maxBatch: Int
    /// Most tokens (prompt + completion) of one request; the model's own limit applies as well.
    public var maxContext: Int?
    /// Most requests waiting for a place in the batch; more are answered 503.
    public var maxQueue: Int
    /// Largest request body accepted; larger ones are answered 413.
    public var maxBodyBytes: Int
    /// Completion length when a request gives no max_tokens (still bounded by the context).
    public var defaultMaxTokens: Int
    /// Prompt tokens prefilled per scheduler step.
    public var prefillChunk: Int
    /// After SIGTERM, how long in-flight requests may run before they are cancelled.
    public var shutdownGraceSeconds: Double
    /// When set, requests must send `Authorization: Bearer <apiKey>` (else 401), except to
    /// /health and /metrics, which stay open for probes and scrapers.
    public var apiKey: String?
    /// Most open connections; further clients wait to be accepted.
    public var maxConnections: Int
    /// A connection with no request in progress, or whose request head has not fully arrived,
    /// is closed after this many seconds (slow or idle clients cannot hold connections).
    public var headerTimeoutSeconds: Int64
    /// A request body must arrive within this many seconds of its head, else 408 and close.
    public var bodyTimeoutSeconds: Int64

    public init(host: String = "127.0.0.1", port: Int = 8180, maxBatch: Int = 8, maxContext: Int? = nil,
                maxQueue: Int = 64, maxBodyBytes: Int = 1 << 20, defaultMaxTokens: Int = 256,
                prefillChunk: Int = 64, shutdownGraceSeconds: Double = 30, apiKey: String? = nil,
                maxConnections: Int = 512, headerTimeoutSeconds: Int64 = 30, bodyTimeoutSeconds: Int64 = 60) {
        self.host = host
        self.port = port
        self.maxBatch = maxBatch
        self.maxContext = maxContext
        self.maxQueue = maxQueue
        self.maxBodyBytes = maxBodyBytes
        self.defaultMaxTokens = defaultMaxTokens
        self.prefillChunk = prefillChunk
        self.shutdownGraceSeconds = shutdownGraceSeconds
        self.apiKey = apiKey
        self.maxConnections = maxConnections
        self.headerTimeoutSeconds = headerTimeoutSeconds
        self.bodyTimeoutSeconds = bodyTimeoutSeconds
    }
}
