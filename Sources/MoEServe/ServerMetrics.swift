import Foundation

/// Counters and histograms of the server, rendered in Prometheus' text exposition format.
public final class ServerMetrics: @unchecked Sendable {
    private let lock = NSLock()
    private var requests: [RequestKey: Int] = [:]
    private var promptTokens = 0
    private var prefilledTokens = 0
    private var generatedTokens = 0
    private var decodeSteps = 0
    private var decodeRows = 0
    private var cancelled = 0
    private var timeToFirstToken = Histogram(bounds: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])
    private var timePerToken = Histogram(bounds: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5])

    private struct RequestKey: Hashable, Comparable {
        var endpoint: String
        var status: Int
        static func < (a: Self, b: Self) -> Bool { (a.endpoint, a.status) < (b.endpoint, b.status) }
    }

    struct Histogram {
        let bounds: [Double]
        var counts: [Int]
        var sum = 0.0
        var count = 0

        init(bounds: [Double]) {
            self.bounds = bounds
            counts = Array(repeating: 0, count: bounds.count)
        }

        mutating func observe(_ value: Double) {
            for (i, bound) in bounds.enumerated() where value <= bound { counts[i] += 1 }
            sum += value
            count += 1
        }
    }

    public init() {}

    func recordRequest(endpoint: String, status: Int) {
        lock.withLock { requests[RequestKey(endpoint: endpoint, status: status), default: 0] += 1 }
    }

    func recordPrompt(tokens: Int) { lock.withLock { promptTokens += tokens } }

    func recordPrefill(tokens: Int) { lock.withLock { prefilledTokens += tokens } }

    func recordFirstToken(after seconds: Double) {
        lock.withLock {
            generatedTokens += 1
            timeToFirstToken.observe(seconds)
        }
    }

    func recordNextToken(after seconds: Double) {
        lock.withLock {
            generatedTokens += 1
            timePerToken.observe(seconds)
        }
    }

    func recordDecodeStep(rows: Int) {
        lock.withLock {
            decodeSteps += 1
            decodeRows += rows
        }
    }

    func recordCancelled() { lock.withLock { cancelled += 1 } }

    /// Sequences that ended early because their client went away or the server shut down.
    public var cancelledSequences: Int { lock.withLock { cancelled } }

    /// Mean number of sequences per batched decode step so far.
    public var decodeRowsPerStep: Double {
        lock.withLock { decodeSteps > 0 ? Double(decodeRows) / Double(decodeSteps) : 0 }
    }

    /// Requests answered with `status` on `endpoint` so far (for tests and the load report).
    public func requestCount(endpoint: String, status: Int) -> Int {
        lock.withLock { requests[RequestKey(endpoint: endpoint, status: status)] ?? 0 }
    }

    public func render(running: Int, queued: Int) -> String {
        lock.withLock {
            var out = ""
            out += "# HELP moepack_requests_total HTTP requests answered, by endpoint and status code.\n"
            out += "# TYPE moepack_requests_total counter\n"
            for (key, value) in requests.sorted(by: { $0.key < $1.key }) {
                out += "moepack_requests_total{endpoint=\"\(key.endpoint)\",status=\"\(key.status)\"} \(value)\n"
            }
            out += counter("moepack_prompt_tokens_total", "Prompt tokens accepted for generation.", promptTokens)
            out += counter("moepack_prefilled_tokens_total",
                           "Prompt tokens run through the model (choices of one prompt share one prefill).", prefilledTokens)
            out += counter("moepack_generated_tokens_total", "Tokens generated.", generatedTokens)
            out += counter("moepack_decode_steps_total", "Batched decode steps run.", decodeSteps)
            out += counter("moepack_decode_rows_total", "Sequence-steps run in batched decode steps (rows / steps = mean batch).", decodeRows)
            out += counter("moepack_cancelled_sequences_total",
                           "Sequences ended early: client disconnected or server shutting down.", cancelled)
            out += histogram("moepack_time_to_first_token_seconds",
                             "Time from a request's arrival to its first generated token.", timeToFirstToken)
            out += histogram("moepack_time_per_output_token_seconds",
                             "Time between consecutive generated tokens of a sequence.", timePerToken)
            out += gauge("moepack_running_sequences", "Sequences in the decode batch.", running)
            out += gauge("moepack_queued_sequences", "Sequences waiting for a place in the batch.", queued)
            return out
        }
    }

    private func counter(_ name: String, _ help: String, _ value: Int) -> String {
        "# HELP \(name) \(help)\n# TYPE \(name) counter\n\(name) \(value)\n"
    }

    private func gauge(_ name: String, _ help: String, _ value: Int) -> String {
        "# HELP \(name) \(help)\n# TYPE \(name) gauge\n\(name) \(value)\n"
    }

    private func histogram(_ name: String, _ help: String, _ h: Histogram) -> String {
        var out = "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        for (bound, count) in zip(h.bounds, h.counts) {
            out += "\(name)_bucket{le=\"\(bound)\"} \(count)\n"
        }
        out += "\(name)_bucket{le=\"+Inf\"} \(h.count)\n"
        out += "\(name)_sum \(h.sum)\n\(name)_count \(h.count)\n"
        return out
    }
}
