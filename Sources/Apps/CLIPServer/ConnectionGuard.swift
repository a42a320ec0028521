import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// One connection's defences against slow and oversized clients, between the HTTP decoder and Hummingbird:
///
/// - A request's headers must be complete within `header`: on a new connection from its start, later from the next
///   request's first byte (a client dripping a second request's headers a byte at a time would otherwise hold the
///   connection for ever: Hummingbird's idle timer only sees whole request parts).
/// - A request's body must be complete within `body` after its headers.
/// - A response being sent must make progress (the bytes waiting for the socket going down) at least every `body`,
///   until its last byte is written: a client that never reads would otherwise hold the connection and the
///   response's memory for ever. A connection that is to close closes once its last response is written, so
///   nothing queued is thrown away.
/// - While a request is being answered nothing else is timed (the model may queue).
/// - Lingering close: a response sent before its request was read (413 on Content-Length) leaves the client still
///   sending; closing then makes the kernel answer the rest with a reset, and a client that sends its whole body
///   before reading (Python's urllib) sees the reset, not the 413. The rest of the body is read and dropped for at
///   most `linger` and `lingerBytes`, as nginx does, also when the client asked for `Connection: close` (which
///   Hummingbird honours by closing without reading on).
///
/// Requests may be pipelined: each has its own record, answered in order.
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

    /// A request from its head until its response has ended.
    private struct Exchange {
        /// The client sent `Connection: close`.
        var closeAfter: Bool
        /// The client sent `Expect: 100-continue`: answered before its body was read, it never sent the body.
        var expectsContinue: Bool
        /// Its end has arrived.
        var read = false
        /// Its response says `Connection: close` (Hummingbird's answer to a parse error, say).
        var responseCloses = false
        /// Some of its body has arrived (a client that announced Expect: 100-continue may send it anyway).
        var bodySeen = false
    }

    private let limits: Limits
    /// Requests not yet answered, oldest first; only the last can still be arriving.
    private var exchanges: [Exchange] = []
    /// A request answered before it was read: the bytes dropped so far, and whether to close once it ends.
    private var lingering: (dropped: Int, close: Bool)?
    /// Header, body or linger deadline (reading), and the response's progress deadline (sending).
    private var readTimer: Scheduled<Void>?
    private var sendTimer: Scheduled<Void>?
    /// Responses whose head is written and whose last byte is not yet: the send deadline runs while there are any.
    private var responsesInFlight = 0
    /// Bytes waiting for the socket when the send deadline was last armed: fewer when it fires is progress.
    private var bufferedAtArm = 0
    /// A response without a request (Hummingbird's 400 for bytes it cannot parse) that says `Connection: close`.
    private var closeAfterOrphanResponse = false

    init(_ limits: Limits) { self.limits = limits }

    func handlerAdded(context: ChannelHandlerContext) {
        // Raw bytes are seen before the HTTP decoder, so a request that has started but not finished its headers is
        // noticed.
        let watcher = ByteWatcher { [weak self] in self?.bytesArrived(context) }
        _ = try? context.pipeline.syncOperations.addHandler(watcher, position: .first)
        if context.channel.isActive { arm(&readTimer, context, limits.header) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(&readTimer, context, limits.header)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimers()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { cancelTimers() }

    /// Bytes between requests start the next one's header deadline.
    private func bytesArrived(_ context: ChannelHandlerContext) {
        let reading = lingering != nil || exchanges.last.map { !$0.read } ?? false
        if !reading && readTimer == nil { arm(&readTimer, context, limits.header) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(var head):
            arm(&readTimer, context, limits.body)
            let close = head.headerFields[.connection].map(Self.saysClose) ?? false
            exchanges.append(Exchange(closeAfter: close, expectsContinue: head.headerFields[.expect]?.lowercased() == "100-continue"))
            if close {
                // Hummingbird would close without reading the rest of the body; the close is this handler's.
                head.headerFields[.connection] = nil
                context.fireChannelRead(wrapInboundOut(.head(head)))
                return
            }
        case .body(let buffer):
            if !exchanges.isEmpty { exchanges[exchanges.count - 1].bodySeen = true }
            if let l = lingering {
                let dropped = l.dropped + buffer.readableBytes
                lingering = (dropped, l.close)
                if dropped > limits.lingerBytes { close(context); return }
            }
        case .end:
            cancel(&readTimer)
            if let l = lingering {
                lingering = nil
                context.fireChannelRead(data)
                if l.close { close(context) }
                return
            }
            if !exchanges.isEmpty { exchanges[exchanges.count - 1].read = true }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head):
            responsesInFlight += 1
            if sendTimer == nil { armSend(context) }
            if head.headerFields[.connection].map(Self.saysClose) ?? false {
                if exchanges.isEmpty { closeAfterOrphanResponse = true } else { exchanges[0].responseCloses = true }
            }
            // Said in the answer when the connection will close after it: asked for, or a client still waiting to
            // send the body it announced with Expect: 100-continue.
            if let first = exchanges.first, first.closeAfter || (first.expectsContinue && !first.read && !first.bodySeen) {
                head.headerFields[.connection] = "close"
                context.write(wrapOutboundOut(.head(head)), promise: promise)
                return
            }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            let closeWhenWritten = responseEnded(context)
            let written = context.eventLoop.makePromise(of: Void.self)
            if let promise { written.futureResult.cascade(to: promise) }
            written.futureResult.assumeIsolated().whenComplete { [weak self] _ in
                guard let self else { return }
                self.responsesInFlight = max(0, self.responsesInFlight - 1)
                if self.responsesInFlight == 0 { self.cancel(&self.sendTimer) }
                if closeWhenWritten { self.close(context) }
            }
            context.writeAndFlush(data, promise: written)
        }
    }

    /// The oldest request is answered: whether to close once the answer is written; lingers when the request is still
    /// arriving.
    private func responseEnded(_ context: ChannelHandlerContext) -> Bool {
        guard !exchanges.isEmpty else {
            defer { closeAfterOrphanResponse = false }
            return closeAfterOrphanResponse
        }
        let answered = exchanges.removeFirst()
        let close = answered.closeAfter || answered.responseCloses
        guard !answered.read else { return close }
        // The client waited for a 100 Continue that never came and sent nothing: it has no body in flight.
        if answered.expectsContinue && !answered.bodySeen { return true }
        lingering = (0, close)
        arm(&readTimer, context, limits.linger)
        return false
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // The socket took more of the responses: progress.
        if responsesInFlight > 0 && context.channel.isWritable { armSend(context) }
        context.fireChannelWritabilityChanged()
    }

    /// The send deadline: when it fires, fewer bytes waiting than when it was armed is progress, and it runs again;
    /// otherwise the client has stopped reading and the connection closes.
    private func armSend(_ context: ChannelHandlerContext) {
        sendTimer?.cancel()
        bufferedAtArm = buffered(context)
        sendTimer = context.eventLoop.assumeIsolated().scheduleTask(in: limits.body) { [weak self] in
            guard let self else { return }
            self.sendTimer = nil
            if self.responsesInFlight > 0 && self.buffered(context) < self.bufferedAtArm {
                self.armSend(context)
            } else {
                self.cancelTimers()
                context.close(promise: nil)
            }
        }
    }

    private func buffered(_ context: ChannelHandlerContext) -> Int {
        (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
    }

    private static func saysClose(_ value: String) -> Bool {
        value.lowercased().split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == "close" }
    }

    private func close(_ context: ChannelHandlerContext) {
        cancelTimers()
        context.flush()
        context.close(promise: nil)
    }

    private func arm(_ timer: inout Scheduled<Void>?, _ context: ChannelHandlerContext, _ after: TimeAmount) {
        timer?.cancel()
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: after) { [weak self] in
            self?.cancelTimers()
            context.close(promise: nil)
        }
    }

    private func cancel(_ timer: inout Scheduled<Void>?) {
        timer?.cancel()
        timer = nil
    }

    private func cancelTimers() {
        cancel(&readTimer)
        cancel(&sendTimer)
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
