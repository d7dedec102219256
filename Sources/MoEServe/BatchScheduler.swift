import Foundation
import MoERuntime

/// What a submitted generation produces, in order: `.token` per generated token, then one
/// `.finished` (or `.failed`).
public enum JobEvent: Sendable, Equatable {
    /// Log-probabilities of the prompt's tokens after the first (each under the logits of the
    /// position before it), once the prompt is prefilled, when the submission asked for them.
    case prompt(logprobs: [TokenLogprobs])
    /// `logprobs` when the submission asked for them.
    case token(id: Int32, text: String, logprobs: TokenLogprobs?)
    case finished(FinishReason, promptTokens: Int, completionTokens: Int)
    case failed(String)
}

/// A submitted generation: its events, and a way to stop it early.
public struct GenerationHandle: Sendable {
    public let events: AsyncStream<JobEvent>
    let sequence: BatchScheduler.ScheduledSequence

    /// Ends the sequence before its next step and frees its cache (harmless once it finished).
    public func cancel() { sequence.cancel() }
}

/// Continuous batching. One thread runs a shared loop; each step every decoding sequence advances
/// by one token through `ErnieModel.decodeBatch` (weights read once for the whole batch), and at
/// most one chunk of one waiting prompt is prefilled, so a long prompt delays the running
/// sequences by one chunk per step instead of its whole length. Sequences join between steps and
/// leave as soon as they finish or their consumer goes away; each owns its KV cache, freed on exit.
public final class BatchScheduler: @unchecked Sendable {
    public struct Limits: Sendable {
        /// Most sequences decoding together.
        public var maxBatch: Int
        /// Most sequences waiting for a place in the batch; more are refused (HTTP 503).
        public var maxQueue: Int
        /// Prompt tokens prefilled per step.
        public var prefillChunk: Int

        public init(maxBatch: Int = 8, maxQueue: Int = 64, prefillChunk: Int = 64) {
            self.maxBatch = maxBatch
            self.maxQueue = maxQueue
            self.prefillChunk = prefillChunk
        }
    }

    public let model: LanguageModel
    public let limits: Limits
    let metrics: ServerMetrics

    private let condition = NSCondition()
    // Guarded by `condition`.
    private var waiting: [ScheduledSequence] = []
    private var runningCount = 0
    private var draining = false
    private var stopping = false
    private var threadFinished = false
    private var nextID = 0
    /// Set by `cancelAll`; the loop cancels the running sequences with this reason.
    private var cancelRunning: String?
    private var stopWaiters: [CheckedContinuation<Void, Never>] = []
    // Touched only by the scheduler thread.
    private var running: [ScheduledSequence] = []
    /// Tests slow the loop down with this so that timing-dependent paths (a client hanging up
    /// mid-generation) happen for certain. Set before `start()`.
    var stepPause: Duration?

    public init(model: LanguageModel, limits: Limits = Limits(), metrics: ServerMetrics = ServerMetrics()) {
        self.model = model
        self.limits = Limits(maxBatch: max(1, limits.maxBatch), maxQueue: max(0, limits.maxQueue),
                             prefillChunk: max(1, limits.prefillChunk))
        self.metrics = metrics
    }

    /// Starts the decode thread.
    public func start() {
        let thread = Thread { [self] in loop() }
        thread.name = "moepack-scheduler"
        thread.start()
    }

    /// Queues a generation. `cacheCapacity` bounds prompt + generated tokens. The stream ends after
    /// `.finished` or `.failed`; `cancel()`, or dropping the stream, cancels the sequence.
    /// `logprobs`: give every token's log-probability with this many most likely alternatives;
    /// `promptLogprobs`: the prompt's tokens' as well (one `.prompt` event). With `maxTokens` 0 the
    /// sequence ends after its prefill.
    public func submit(prompt: [Int32], options: GenerationOptions, cacheCapacity: Int,
                       ignoreEOS: Bool = false, logprobs: Int? = nil, promptLogprobs: Bool = false) throws -> GenerationHandle {
        try submit([Submission(prompt: prompt, options: options, cacheCapacity: cacheCapacity)], ignoreEOS: ignoreEOS,
                   logprobs: logprobs, promptLogprobs: promptLogprobs)[0]
    }

    /// One sequence to queue: its prompt, generation options and cache size.
    public struct Submission: Sendable {
        public var prompt: [Int32]
        public var options: GenerationOptions
        public var cacheCapacity: Int

        public init(prompt: [Int32], options: GenerationOptions, cacheCapacity: Int) {
            self.prompt = prompt
            self.options = options
            self.cacheCapacity = cacheCapacity
        }
    }

    /// Queues several sequences (a request's prompts and choices): all of them, or none when the
    /// queue has no room for all. Handles come in the order of `submissions`.
    public func submit(_ submissions: [Submission], ignoreEOS: Bool = false, logprobs: Int? = nil,
                       promptLogprobs: Bool = false) throws -> [GenerationHandle] {
        guard submissions.allSatisfy({ !$0.prompt.isEmpty }) else { throw APIError.invalidRequest("the prompt is empty") }
        return try condition.withLock {
            if draining || stopping { throw APIError.shuttingDown }
            // Running ones are counted until the loop notices they ended: refusals err on the safe side.
            guard waiting.count + runningCount + submissions.count <= limits.maxBatch + limits.maxQueue else {
                throw APIError.queueFull
            }
            var leaders: [ScheduledSequence] = []
            let handles = submissions.map { submission in
                let (stream, continuation) = AsyncStream<JobEvent>.makeStream()
                nextID += 1
                let sequence = ScheduledSequence(id: nextID, prompt: submission.prompt, options: submission.options,
                                                 capacity: submission.cacheCapacity, ignoreEOS: ignoreEOS, logprobs: logprobs,
                                                 promptLogprobs: promptLogprobs && logprobs != nil, continuation: continuation)
                // No lock here: this also runs when the scheduler itself finishes the stream. The loop
                // only sleeps when it has no sequences, so a cancel flag needs no wake-up.
                continuation.onTermination = { [weak sequence] _ in sequence?.cancel() }
                // Choices of one prompt prefill it once: the first computes, the others copy its cache.
                if let leader = leaders.first(where: { $0.prompt == submission.prompt }) {
                    sequence.leader = leader
                    leader.followers.append(sequence)
                } else {
                    leaders.append(sequence)
                }
                waiting.append(sequence)
                return GenerationHandle(events: stream, sequence: sequence)
            }
            condition.signal()
            return handles
        }
    }

    /// Sequences decoding and waiting right now.
    public var load: (running: Int, queued: Int) {
        condition.withLock { (runningCount, waiting.count) }
    }

    /// Refuses new work from now on; running and queued sequences go on.
    public func beginDraining() {
        condition.withLock { draining = true }
    }

    /// Ends every queued and running sequence with `.failed(reason)` at the next step.
    public func cancelAll(reason: String) {
        condition.withLock {
            for sequence in waiting { sequence.cancel(reason: reason) }
            cancelRunning = reason
            condition.signal()
        }
    }

    /// Stops accepting work, lets the current sequences finish and returns when the thread is done.
    public func stop() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            condition.withLock {
                draining = true
                stopping = true
                if threadFinished {
                    done.resume()
                } else {
                    stopWaiters.append(done)
                    condition.signal()
                }
            }
        }
    }

    // MARK: The decode loop (scheduler thread)

    private func loop() {
        while true {
            condition.lock()
            runningCount = running.count
            while running.isEmpty && waiting.isEmpty && !stopping { condition.wait() }
            if let reason = cancelRunning {
                for sequence in running { sequence.cancel(reason: reason) }
                cancelRunning = nil
            }
            dropCancelled(&waiting)
            while running.count < limits.maxBatch, !waiting.isEmpty { running.append(waiting.removeFirst()) }
            runningCount = running.count
            if stopping && running.isEmpty && waiting.isEmpty {
                threadFinished = true
                let waiters = stopWaiters
                stopWaiters = []
                condition.unlock()
                for waiter in waiters { waiter.resume() }
                return
            }
            condition.unlock()
            step()
            if let pause = stepPause { Thread.sleep(forTimeInterval: seconds(pause)) }
        }
    }

    private func step() {
        dropCancelled(&running)
        let decoding = running.compactMap { s in
            s.pendingToken.flatMap { token in s.cache.map { (sequence: s, token: token, cache: $0) } }
        }
        if !decoding.isEmpty { decodeStep(decoding) }
        if let next = running.first(where: { $0.pendingToken == nil && !$0.isDone && !$0.awaitsLeader }) { prefillStep(next) }
        running.removeAll(where: \.isDone)
    }

    private func dropCancelled(_ list: inout [ScheduledSequence]) {
        list.removeAll { sequence in
            guard sequence.finishIfCancelled() else { return false }
            metrics.recordCancelled()
            return true
        }
    }

    private func decodeStep(_ rows: [(sequence: ScheduledSequence, token: Int32, cache: KVCache)]) {
        let vocab = model.model.config.vocabSize
        let batch = rows.map(\.sequence)
        do {
            let logits = try model.model.decodeBatch(tokens: rows.map(\.token), caches: rows.map(\.cache))
            metrics.recordDecodeStep(rows: batch.count)
            logits.withUnsafeBufferPointer { all in
                for (row, sequence) in batch.enumerated() {
                    let rowLogits = UnsafeBufferPointer(rebasing: all[(row * vocab)..<((row + 1) * vocab)])
                    emit(sequence, logits: rowLogits)
                }
            }
        } catch {
            for sequence in batch { sequence.fail("decoding failed: \(error)") }
        }
    }

    private func prefillStep(_ sequence: ScheduledSequence) {
        let start = sequence.prefilled
        let end = min(sequence.prompt.count, start + limits.prefillChunk)
        do {
            let cache = sequence.cache ?? model.model.makeCache(capacity: sequence.capacity)
            if sequence.cache == nil {
                sequence.cache = cache
                metrics.recordPrompt(tokens: sequence.prompt.count)
            }
            let scoring = sequence.promptLogprobs
            let logits = try model.model.forward(Array(sequence.prompt[start..<end]), cache: cache, lastOnly: !scoring)
            metrics.recordPrefill(tokens: end - start)
            let vocab = model.model.config.vocabSize
            if scoring, let top = sequence.logprobs {
                // Row r predicts the token after position start + r.
                logits.withUnsafeBufferPointer { all in
                    for r in 0..<(end - start) where start + r + 1 < sequence.prompt.count {
                        let row = UnsafeBufferPointer(rebasing: all[(r * vocab)..<((r + 1) * vocab)])
                        sequence.promptEntries.append(TokenLogprobs(token: sequence.prompt[start + r + 1], logits: row, top: top))
                    }
                }
            }
            sequence.prefilled = end
            if end == sequence.prompt.count {
                logits.withUnsafeBufferPointer { all in
                    let last = UnsafeBufferPointer(rebasing: all[(all.count - vocab)...])
                    // Followers already in the batch start from a copy of this cache; the others
                    // (not yet admitted, or cancelled) prefill on their own.
                    for follower in sequence.followers {
                        follower.leader = nil
                        guard !follower.isDone, follower.cache == nil,
                              running.contains(where: { $0 === follower }) else { continue }
                        do {
                            let copy = model.model.makeCache(capacity: follower.capacity)
                            try copy.copyPositions(from: cache)
                            follower.cache = copy
                            metrics.recordPrompt(tokens: follower.prompt.count)
                            follower.prefilled = follower.prompt.count
                            follower.promptEntries = sequence.promptEntries
                            startGenerating(follower, logits: last)
                        } catch {
                            follower.fail("prefill failed: \(error)")
                        }
                    }
                    sequence.followers = []
                    startGenerating(sequence, logits: last)
                }
            }
        } catch {
            sequence.fail("prefill failed: \(error)")
        }
    }

    /// After the prompt: its log-probabilities when asked for, then the first token (from the last
    /// prompt position's logits), or the end when no token was asked for.
    private func startGenerating(_ sequence: ScheduledSequence, logits: UnsafeBufferPointer<Float>) {
        if sequence.promptLogprobs { sequence.continuation.yield(.prompt(logprobs: sequence.promptEntries)) }
        sequence.decoder = TokenDecoder(model: model, prompt: sequence.prompt, options: sequence.options,
                                        ignoreEOS: sequence.ignoreEOS)
        if sequence.options.maxTokens == 0 {
            sequence.finish(.maxTokens)
        } else {
            emit(sequence, logits: logits)
        }
    }

    /// Samples the sequence's next token, sends it, and either queues it for the next decode step
    /// or finishes the sequence.
    private func emit(_ sequence: ScheduledSequence, logits: UnsafeBufferPointer<Float>) {
        let cacheFull = sequence.cache.map { $0.count >= $0.capacity } ?? true
        guard let step = sequence.decoder?.next(logits, cacheFull: cacheFull) else { return }
        let now = ContinuousClock.now
        if let last = sequence.lastTokenTime {
            metrics.recordNextToken(after: seconds(now - last))
        } else {
            metrics.recordFirstToken(after: seconds(now - sequence.submitted))
        }
        sequence.lastTokenTime = now
        let logprobs = sequence.logprobs.map { TokenLogprobs(token: step.token, logits: logits, top: $0) }
        sequence.continuation.yield(.token(id: step.token, text: step.text, logprobs: logprobs))
        if let finish = step.finish {
            sequence.finish(finish)
        } else {
            sequence.pendingToken = step.token
        }
    }

    /// One request's state. The cancel flag is shared with the consumer's side; everything else
    /// belongs to the scheduler thread.
    final class ScheduledSequence: @unchecked Sendable {
        let id: Int
        let prompt: [Int32]
        let options: GenerationOptions
        let capacity: Int
        let ignoreEOS: Bool
        let logprobs: Int?
        let promptLogprobs: Bool
        let continuation: AsyncStream<JobEvent>.Continuation
        let submitted = ContinuousClock.now

        private let lock = NSLock()
        private var cancelled = false
        private var cancelReason: String?

        var cache: KVCache?
        var prefilled = 0
        /// With `promptLogprobs`: the prompt's tokens' so far, gathered chunk by chunk.
        var promptEntries: [TokenLogprobs] = []
        /// Another choice of the same prompt whose prefill this one copies (until that is done).
        weak var leader: ScheduledSequence?
        /// The choices waiting to copy this one's prefill.
        var followers: [ScheduledSequence] = []

        /// Waits for its leader's prefill rather than computing its own.
        var awaitsLeader: Bool {
            guard let leader else { return false }
            return !leader.isDone && leader.prefilled < leader.prompt.count
        }
        var decoder: TokenDecoder?
        var pendingToken: Int32?
        var lastTokenTime: ContinuousClock.Instant?
        private(set) var isDone = false

        init(id: Int, prompt: [Int32], options: GenerationOptions, capacity: Int, ignoreEOS: Bool, logprobs: Int?,
             promptLogprobs: Bool, continuation: AsyncStream<JobEvent>.Continuation) {
            self.id = id
            self.prompt = prompt
            self.options = options
            self.capacity = capacity
            self.ignoreEOS = ignoreEOS
            self.logprobs = logprobs
            self.promptLogprobs = promptLogprobs
            self.continuation = continuation
        }

        /// Called from any thread: the consumer went away, or the server cancels it.
        func cancel(reason: String? = nil) {
            lock.withLock {
                cancelled = true
                if cancelReason == nil { cancelReason = reason }
            }
        }

        /// Ends and releases the sequence if it was cancelled; true when it did.
        func finishIfCancelled() -> Bool {
            let (isCancelled, reason) = lock.withLock { (cancelled, cancelReason) }
            guard isCancelled else { return false }
            if let reason { continuation.yield(.failed(reason)) }
            release()
            return true
        }

        func finish(_ reason: FinishReason) {
            continuation.yield(.finished(reason, promptTokens: prompt.count, completionTokens: decoder?.generated ?? 0))
            release()
        }

        func fail(_ message: String) {
            continuation.yield(.failed(message))
            release()
        }

        private func release() {
            isDone = true
            pendingToken = nil
            cache = nil
            continuation.finish()
        }
    }
}

func seconds(_ duration: Duration) -> Double {
    let c = duration.components
    return Double(c.seconds) + Double(c.attoseconds) * 1e-18
}
