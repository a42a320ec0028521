import Foundation

/// Why the batcher turned work away.
package enum BatcherError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The queue is full: the client should come back after `retryAfter` seconds.
    case overloaded(retryAfter: Int)
    /// The server is shutting down and takes no new work.
    case shuttingDown
    /// The model failed on a batch (the message names the input when it can).
    case failed(String)

    package var description: String {
        switch self {
        case .overloaded(let s): return "the server is at capacity; retry in \(s) s"
        case .shuttingDown: return "the server is shutting down"
        case .failed(let m): return m
        }
    }
}

/// Dynamic batching across concurrent requests: requests put their inputs into one of two lanes (texts, images);
/// one thread takes up to `maxBatch` inputs of a lane at a time and runs the model once on them.
///
/// The thread runs the lane whose oldest input has waited longest. A lane with fewer than `maxBatch` inputs is held
/// back for at most `maxWait` after its oldest input arrived, so a lone request pays at most that and a saturated
/// server always runs full batches (inputs pile up while the previous batch runs). One thread for both lanes: the
/// model already uses every core, so two batches at once would only slow each other down.
///
/// Admission is decided before a request's body is read, so a full server answers at once without reading or
/// decoding anything: a request is admitted when the queue's predicted drain time (its inputs by lane, at each
/// lane's last batch time) is within the request's deadline (`maxQueueWait`, or less when the client says it
/// waits less), and fewer than `capacity` inputs wait (the memory bound). An idle server admits any request, so a
/// request larger than the queue is served rather than refused forever.
package final class InferenceBatcher: @unchecked Sendable {
    // @unchecked: the queues, counters and flags are read and written only under `condition`; a queued request's
    // PendingRequest only by the batching thread.
    /// The two kinds of input, each with its own queue and model call.
    package enum Lane: Int, Sendable, CaseIterable {
        case text, image
        var name: String { self == .text ? "text" : "image" }
    }

    /// One input and where its result goes.
    struct Item {
        var input: Input
        var enqueued: ContinuousClock.Instant
        var request: PendingRequest
        var position: Int
    }

    /// A request's inputs in flight: resumed once, when the last of them has its embedding (or one failed).
    /// Touched only by the batching thread after it is queued.
    final class PendingRequest: @unchecked Sendable {
        var results: [[Float]]
        var remaining: Int
        var continuation: CheckedContinuation<[[Float]], any Error>?

        init(count: Int, continuation: CheckedContinuation<[[Float]], any Error>) {
            results = Array(repeating: [], count: count)
            remaining = count
            self.continuation = continuation
        }

        func deliver(_ row: [Float], at i: Int) {
            results[i] = row
            remaining -= 1
            if remaining == 0 { continuation?.resume(returning: results); continuation = nil }
        }

        func fail(_ error: any Error) {
            continuation?.resume(throwing: error)
            continuation = nil
        }
    }

    /// A lane's input: token ids for texts, preprocessed pixels [3 × R × R] for images.
    package enum Input: Sendable {
        case tokens([Int])
        case pixels([Float])
    }

    /// Runs the model on a batch of one lane: one L2-normalised embedding per input, in order.
    package typealias Runner = @Sendable (Lane, [Input]) throws -> [[Float]]

    package let maxBatch: Int
    package let maxWait: Duration
    package let capacity: Int
    /// The longest predicted wait a request is admitted to.
    package let maxQueueWait: Duration
    private let runner: Runner
    private let observer: BatchObserver?

    private let condition = NSCondition()
    private var queues: [[Item]] = [[], []]
    /// Inputs admitted (reserved) whose requests have not yet enqueued them: bodies being read, images decoded.
    private var reserved = 0
    private var stopping = false
    /// Seconds the last batch of each lane took: the queue's predicted drain time is counted at this pace.
    private var lastBatchSeconds = [0.0, 0.0]
    private var running = false
    /// The batch being run, for the predicted wait: its lane and when it started.
    private var current: (lane: Lane, started: ContinuousClock.Instant)?
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    /// - Parameters:
    ///   - maxBatch: inputs per model call at most.
    ///   - maxWait: how long a partial batch waits for company.
    ///   - capacity: inputs waiting at most (queued, or admitted and not yet queued; the batch being run is not
    ///     counted); beyond, `admit` fails with `.overloaded`. The memory bound.
    ///   - maxQueueWait: the longest predicted wait a request is admitted to.
    package init(maxBatch: Int, maxWait: Duration, capacity: Int, maxQueueWait: Duration = .seconds(30),
                observer: BatchObserver? = nil, runner: @escaping Runner) {
        self.maxBatch = max(1, maxBatch)
        self.maxWait = maxWait
        self.capacity = max(1, capacity)
        self.maxQueueWait = maxQueueWait
        self.runner = runner
        self.observer = observer
    }

    /// Starts the batching thread (idempotent).
    package func start() {
        condition.lock()
        defer { condition.unlock() }
        guard thread == nil else { return }
        let t = Thread { [self] in loop() }
        t.name = "clip-batcher"
        t.stackSize = 8 << 20
        thread = t
        running = true
        t.start()
    }

    /// Stops taking work, finishes everything queued, and returns when the thread has ended.
    package func shutdown() {
        condition.lock()
        stopping = true
        let wasRunning = running
        condition.broadcast()
        condition.unlock()
        if wasRunning { finished.wait() }
    }

    /// Inputs waiting now: queued, or admitted and not yet queued.
    package var depth: Int {
        condition.lock()
        defer { condition.unlock() }
        return reserved + queues[0].count + queues[1].count
    }

    /// Reserves `count` inputs' room for a request, or fails at once when the server is full or stopping. Room a
    /// request does not use goes back when its `Reservation` ends. `deadline` is how long the client waits, when
    /// it says (it only lowers `maxQueueWait`).
    package func admit(_ count: Int = 1, deadline: Duration? = nil) throws(BatcherError) -> Reservation {
        condition.lock()
        defer { condition.unlock() }
        if stopping { throw .shuttingDown }
        let depth = reserved + queues[0].count + queues[1].count
        let wait = predictedWait(adding: count)
        let limit = min(maxQueueWait, deadline ?? maxQueueWait).inSeconds
        guard depth == 0 || (depth + count <= capacity && wait <= limit) else {
            observer?.rejected()
            throw .overloaded(retryAfter: Self.retryAfter(drain: predictedWait(adding: 0)))
        }
        reserved += count
        observer?.depth(depth + count)
        return Reservation(batcher: self, count: count, deadline: deadline)
    }

    /// Room for `delta` more inputs of a request that holds `own` already: refused like an admission when others
    /// wait and the queue would pass its capacity or the deadline (a request is admitted on one input, before its
    /// body says how many it brings).
    fileprivate func claim(_ delta: Int, own: Int, deadline: Duration?) throws(BatcherError) {
        condition.lock()
        defer { condition.unlock() }
        let depth = reserved + queues[0].count + queues[1].count
        let limit = min(maxQueueWait, deadline ?? maxQueueWait).inSeconds
        if depth > own && (depth + delta > capacity || predictedWait(adding: delta) > limit) {
            observer?.rejected()
            throw .overloaded(retryAfter: Self.retryAfter(drain: predictedWait(adding: 0)))
        }
        reserved += delta
        observer?.depth(depth + delta)
    }

    /// Seconds until `extra` more inputs would be done: the rest of the batch being run (if one is), then the queue,
    /// by lane at each lane's last batch time (inputs admitted but not yet queued, and the new ones, at the slower
    /// lane's). Under the lock.
    private func predictedWait(adding extra: Int) -> Double {
        let slowest = lastBatchSeconds.max() ?? 0
        func batches(_ n: Int) -> Double { Double((n + maxBatch - 1) / maxBatch) }
        var rest = 0.0
        if let current {
            rest = max(0, lastBatchSeconds[current.lane.rawValue] - current.started.duration(to: .now).inSeconds)
        }
        return rest + batches(queues[0].count) * lastBatchSeconds[0] + batches(queues[1].count) * lastBatchSeconds[1]
            + batches(reserved + extra) * slowest
    }

    /// A Retry-After spread over half to one and a half times the drain time (at least 1 s), so that clients told
    /// at the same moment do not all come back at the same moment.
    static func retryAfter(drain: Double) -> Int {
        let base = max(1.0, drain)
        return max(1, Int((base * Double.random(in: 0.5...1.5)).rounded(.up)))
    }

    /// A request's room in the queue; `grow` claims more once the request knows how many inputs it has.
    package final class Reservation: @unchecked Sendable {
        // @unchecked: `count` is guarded by `lock`.
        let batcher: InferenceBatcher
        private let lock = NSLock()
        private var count: Int
        private let deadline: Duration?

        fileprivate init(batcher: InferenceBatcher, count: Int, deadline: Duration?) {
            (self.batcher, self.count, self.deadline) = (batcher, count, deadline)
        }

        /// Claims room for `total` inputs in all, once the request knows how many it brings: refused (503) when
        /// others wait and the queue cannot take them within its capacity and the deadline; a request alone in the
        /// queue is always served, bounded by the per-request input limit.
        package func grow(to total: Int) throws(BatcherError) {
            let (own, delta) = lock.withLock { (count, max(0, total - count)) }
            guard delta > 0 else { return }
            try batcher.claim(delta, own: own, deadline: deadline)
            lock.withLock { count += delta }
        }

        /// Runs inputs of one lane through the batcher; results in input order. The inputs are queued together, so
        /// they share a batch when they fit. A request may run both lanes at once.
        package func run(_ lane: Lane, _ inputs: [Input]) async throws -> [[Float]] {
            guard !inputs.isEmpty else { return [] }
            // Hand the room over to the queue: what this reservation holds first, more when it holds too little.
            let extra = lock.withLock { () -> Int in
                let fromHere = min(count, inputs.count)
                count -= fromHere
                return inputs.count - fromHere
            }
            if extra > 0 { batcher.adjustReserved(by: extra) }
            return try await batcher.enqueue(lane, inputs)
        }

        deinit { if count > 0 { batcher.adjustReserved(by: -count) } }
    }

    private func adjustReserved(by delta: Int) {
        condition.lock()
        reserved = max(0, reserved + delta)
        // Room given back by a request that never ran (a 400, a 404) must show in the gauge too.
        observer?.depth(reserved + queues[0].count + queues[1].count)
        condition.unlock()
    }

    private func enqueue(_ lane: Lane, _ inputs: [Input]) async throws -> [[Float]] {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<[[Float]], any Error>) in
            condition.lock()
            reserved = max(0, reserved - inputs.count)
            guard running else {
                condition.unlock()
                c.resume(throwing: BatcherError.shuttingDown)
                return
            }
            let request = PendingRequest(count: inputs.count, continuation: c)
            let now = ContinuousClock.now
            for (i, input) in inputs.enumerated() {
                queues[lane.rawValue].append(Item(input: input, enqueued: now, request: request, position: i))
            }
            condition.signal()
            condition.unlock()
        }
    }

    // MARK: The batching thread

    private func loop() {
        let clock = ContinuousClock()
        condition.lock()
        while true {
            // The lane whose head has waited longest.
            let lane = Lane.allCases.filter { !queues[$0.rawValue].isEmpty }
                .min { queues[$0.rawValue][0].enqueued < queues[$1.rawValue][0].enqueued }
            guard let lane else {
                if stopping && reserved == 0 { break }
                _ = condition.wait(until: Date(timeIntervalSinceNow: stopping ? 0.01 : 1))
                continue
            }
            let queue = queues[lane.rawValue]
            let deadline = queue[0].enqueued.advanced(by: maxWait)
            if queue.count < maxBatch && clock.now < deadline && !stopping {
                let left = clock.now.duration(to: deadline)
                _ = condition.wait(until: Date(timeIntervalSinceNow: left.inSeconds))
                continue
            }
            let take = min(maxBatch, queue.count)
            let batch = Array(queue.prefix(take))
            queues[lane.rawValue].removeFirst(take)
            current = (lane, clock.now)
            observer?.depth(reserved + queues[0].count + queues[1].count)
            condition.unlock()

            let started = clock.now
            let outcome = Result { try runner(lane, batch.map(\.input)) }
            let took = started.duration(to: clock.now).inSeconds
            observer?.batch(lane: lane, size: take, seconds: took, queueSeconds: batch[0].enqueued.duration(to: started).inSeconds)
            switch outcome {
            case .success(let rows) where rows.count == batch.count:
                for (item, row) in zip(batch, rows) { item.request.deliver(row, at: item.position) }
            case .success(let rows):
                let e = BatcherError.failed("the model returned \(rows.count) embeddings for \(batch.count) inputs")
                for item in batch { item.request.fail(e) }
            case .failure(let error):
                for item in batch { item.request.fail(error) }
            }
            condition.lock()
            lastBatchSeconds[lane.rawValue] = took
            current = nil
        }
        running = false
        condition.unlock()
        finished.signal()
    }
}

extension Duration {
    /// The duration in seconds, as a Double (for metrics, timers and reports).
    package var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}

/// What the batcher reports to metrics.
package protocol BatchObserver: Sendable {
    func batch(lane: InferenceBatcher.Lane, size: Int, seconds: Double, queueSeconds: Double)
    func depth(_ depth: Int)
    func rejected()
}
