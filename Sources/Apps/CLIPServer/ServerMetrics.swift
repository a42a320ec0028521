import Hummingbird
import Metrics
import Prometheus

/// The process's Prometheus registry, bootstrapped into swift-metrics once: Hummingbird's request metrics and ours
/// land in it, and `GET /metrics` prints it.
package enum ServerMetrics {
    /// The registry (bootstrapping swift-metrics on first use; a process has one metrics system).
    package static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // swift-metrics labels are dotted ("hb.requests"); Prometheus names allow [a-zA-Z0-9_:] only.
        factory.nameAndLabelSanitizer = { name, dimensions in
            (prometheusName(name), dimensions.map { (prometheusName($0.0), $0.1) })
        }
        factory.defaultValueHistogramBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256]
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    static func prometheusName(_ s: String) -> String {
        String(s.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") ? $0 : "_" })
    }

    /// The text exposition of every metric.
    package static func exposition() -> [UInt8] { registry.emitToBuffer() }
}

extension CLIPServer {
    /// The batcher's observer reporting into the Prometheus registry, with the model's load time recorded.
    package static func batchMetrics(modelLoadSeconds: Double) -> any BatchObserver {
        let metrics = BatchMetrics()
        Metrics.Gauge(label: "clip_model_load_seconds").record(modelLoadSeconds)
        return metrics
    }
}

/// The batcher's numbers as metrics: batch sizes and model time per lane, time queued, queue depth, rejections.
final class BatchMetrics: BatchObserver {
    private let sizes: [Recorder]
    private let durations: [Metrics.Timer]
    private let waits: [Metrics.Timer]
    private let queueDepth: Metrics.Gauge
    private let rejections: Metrics.Counter

    init() {
        _ = ServerMetrics.registry
        sizes = InferenceBatcher.Lane.allCases.map { Recorder(label: "clip_batch_size", dimensions: [("lane", $0.name)]) }
        durations = InferenceBatcher.Lane.allCases.map { Metrics.Timer(label: "clip_batch_duration_seconds", dimensions: [("lane", $0.name)]) }
        waits = InferenceBatcher.Lane.allCases.map { Metrics.Timer(label: "clip_queue_wait_seconds", dimensions: [("lane", $0.name)]) }
        queueDepth = Metrics.Gauge(label: "clip_queue_depth")
        rejections = Metrics.Counter(label: "clip_rejected_requests_total")
    }

    func batch(lane: InferenceBatcher.Lane, size: Int, seconds: Double, queueSeconds: Double) {
        sizes[lane.rawValue].record(size)
        durations[lane.rawValue].recordNanoseconds(Int64(seconds * 1e9))
        waits[lane.rawValue].recordNanoseconds(Int64(queueSeconds * 1e9))
    }

    func depth(_ depth: Int) { queueDepth.record(depth) }
    func rejected() { rejections.increment() }
}

/// Requests per route, method and status, and their durations: Hummingbird's metric names (`hb_requests`,
/// `http_server_request_duration`), recorded after the error middleware has made every error a response, so a
/// 4xx or 5xx shows under its status. Hummingbird's own middleware also made an error counter per route and status
/// that stays 0 here (errors never reach it as errors): a series per route that says nothing.
struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        let response = try await next(request, context)
        // Until the response is made (a body streamed afterwards is not in it).
        let dimensions = [("http.route", context.endpointPath ?? "unmatched"), ("http.request.method", request.method.rawValue),
                          ("http.response.status_code", String(response.status.code))]
        Counter(label: "hb.requests", dimensions: dimensions).increment()
        Metrics.Timer(label: "http.server.request.duration", dimensions: dimensions, preferredDisplayUnit: .seconds)
            .recordNanoseconds(Int64(started.duration(to: .now).inSeconds * 1e9))
        return response
    }
}
