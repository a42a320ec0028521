import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// One connection's defences against slow and oversized clients, between the HTTP decoder and Hummingbird:
///
/// - A request's headers must be complete within `header`: on a new connection from its start, on a keep-alive
///   connection from the next request's first byte (a client dripping a second request's headers a byte at a time
///   would otherwise hold the connection for ever: Hummingbird's idle timer only sees whole request parts).
/// - A request's body must be complete within `body` after its headers.
/// - While a request is being answered nothing is timed here (the model may queue).
/// - Lingering close: a response sent before its request was read (413 on Content-Length) leaves the client still
///   sending; closing then makes the kernel answer the rest with a reset, and a client that sends its whole body
///   before reading (Python's urllib) sees the reset, not the 413. The rest of the body is read and dropped for at
///   most `linger` and `lingerBytes`, as nginx does, also when the client asked for `Connection: close` (which
///   Hummingbird honours by closing without reading on).
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    struct Limits: Sendable {
        var header: TimeAmount
        var body: TimeAmount
        var linger: TimeAmount
        var lingerBytes: Int

        init(_ options: ServerOptions) {
            header = .nanoseconds(options.headerTimeout.saturatingNanoseconds)
            body = .nanoseconds(options.bodyTimeout.saturatingNanoseconds)
            linger = .nanoseconds(options.lingerTimeout.saturatingNanoseconds)
            lingerBytes = options.lingerBytes
        }
    }

    private enum Phase {
        /// Waiting for a request's headers (timed from the connection's start, or from the first byte of a later one).
        case awaitingHead(timed: Bool)
        /// Headers read, body arriving.
        case readingBody
        /// The request is read; the response is being made.
        case answering
        /// The response is sent but the request's body is still arriving: read and dropped.
        case lingering(dropped: Int)
    }

    private let limits: Limits
    private var phase = Phase.awaitingHead(timed: true)
    private var timer: Scheduled<Void>?
    /// The client sent `Connection: close`: the connection closes once the request is read and answered.
    private var closeAfterResponse = false
    /// The client sent `Expect: 100-continue`: if it is answered before its body is read, it never sent the body.
    private var expectsContinue = false

    init(_ limits: Limits) { self.limits = limits }

    func handlerAdded(context: ChannelHandlerContext) {
        // Raw bytes are seen before the HTTP decoder, so a request that has started but not finished its headers is
        // noticed.
        let watcher = ByteWatcher { [weak self] in self?.bytesArrived(context) }
        _ = try? context.pipeline.syncOperations.addHandler(watcher, position: .first)
        if context.channel.isActive { arm(context, limits.header) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context, limits.header)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimer()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { cancelTimer() }

    private func bytesArrived(_ context: ChannelHandlerContext) {
        if case .awaitingHead(timed: false) = phase {
            phase = .awaitingHead(timed: true)
            arm(context, limits.header)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(var head):
            phase = .readingBody
            arm(context, limits.body)
            expectsContinue = head.headerFields[.expect]?.lowercased() == "100-continue"
            if let connection = head.headerFields[.connection], connection.lowercased().split(separator: ",")
                .contains(where: { $0.trimmingCharacters(in: .whitespaces) == "close" }) {
                // Hummingbird would close without reading the rest of the body; the close is this handler's.
                closeAfterResponse = true
                head.headerFields[.connection] = nil
                context.fireChannelRead(wrapInboundOut(.head(head)))
                return
            }
        case .body(let buffer):
            if case .lingering(let dropped) = phase {
                let total = dropped + buffer.readableBytes
                phase = .lingering(dropped: total)
                if total > limits.lingerBytes { close(context); return }
            }
        case .end:
            cancelTimer()
            if case .lingering = phase {
                context.fireChannelRead(data)
                finishExchange(context)
                return
            }
            phase = .answering
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where closeAfterResponse:
            head.headerFields[.connection] = "close"
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end:
            if case .readingBody = phase {
                if expectsContinue {
                    // The client waited for a 100 Continue that never came: it has no body in flight.
                    closeAfterResponse = true
                    phase = .answering
                    context.writeAndFlush(data, promise: promise)
                    finishExchange(context)
                    return
                }
                phase = .lingering(dropped: 0)
                arm(context, limits.linger)
                context.write(data, promise: promise)
            } else {
                context.writeAndFlush(data, promise: promise)
                finishExchange(context)
            }
        default:
            context.write(data, promise: promise)
        }
    }

    /// The request is read and answered: close when the client asked, else wait for the next one.
    private func finishExchange(_ context: ChannelHandlerContext) {
        cancelTimer()
        if closeAfterResponse {
            close(context)
        } else {
            phase = .awaitingHead(timed: false)
        }
    }

    private func close(_ context: ChannelHandlerContext) {
        cancelTimer()
        context.flush()
        context.close(promise: nil)
    }

    private func arm(_ context: ChannelHandlerContext, _ after: TimeAmount) {
        cancelTimer()
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: after) { [weak self] in
            self?.timer = nil
            context.close(promise: nil)
        }
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
    }
}

/// Passes bytes on unchanged and says that some arrived.
private final class ByteWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let arrived: () -> Void

    init(_ arrived: @escaping () -> Void) { self.arrived = arrived }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        arrived()
        context.fireChannelRead(data)
    }
}
