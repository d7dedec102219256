import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// One per connection, between the HTTP codec and the request handlers:
/// - a request the HTTP parser rejects (a header without a colon, two Content-Lengths, both
///   Content-Length and Transfer-Encoding, ...) gets a 400 with OpenAI's JSON error body, not
///   an empty one; a parse error inside a body is left to the handler reading that body, which
///   answers it the same way;
/// - a request whose body has not fully arrived `bodyTimeout` after its head gets a 408 and the
///   connection is closed, so a client trickling a body cannot hold a connection forever (the
///   head itself is bounded by the server's idle timeout, see `OpenAIServer`).
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let bodyTimeout: TimeAmount
    private let onReject: @Sendable (Int) -> Void
    /// A request head was read and its end not yet.
    private var readingBody = false
    /// A response head was written and its end not yet.
    private var responding = false
    /// An error answer waiting for the response in progress to end.
    private var pendingRejection: APIError?
    private var bodyTimer: Scheduled<Void>?

    /// `onReject(status)` is told of every answer this handler writes itself (for the metrics).
    init(bodyTimeout: TimeAmount, onReject: @escaping @Sendable (Int) -> Void) {
        self.bodyTimeout = bodyTimeout
        self.onReject = onReject
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            readingBody = true
            let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
            bodyTimer = context.eventLoop.scheduleTask(in: bodyTimeout) {
                let (handler, context) = loopBound.value
                handler.reject(context, APIError(status: .requestTimeout,
                                                 message: "the request body did not arrive within the server's body timeout",
                                                 type: "invalid_request_error", code: "request_timeout"))
            }
        case .body:
            break
        case .end:
            readingBody = false
            bodyTimer?.cancel()
            bodyTimer = nil
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let part = unwrapOutboundIn(data)
        switch part {
        case .head(let head) where head.status.kind != .informational: responding = true
        case .end: responding = false
        default: break
        }
        context.write(data, promise: promise)
        if case .end = part, let rejection = pendingRejection {
            pendingRejection = nil
            answer(context, rejection)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError, !readingBody else {
            context.fireErrorCaught(error)
            return
        }
        reject(context, APIError.invalidRequest("the request is not well-formed HTTP", code: "malformed_request"))
    }

    func channelInactive(context: ChannelHandlerContext) {
        bodyTimer?.cancel()
        bodyTimer = nil
        context.fireChannelInactive()
    }

    /// Answers `error` and closes, after the response in progress if there is one.
    private func reject(_ context: ChannelHandlerContext, _ error: APIError) {
        bodyTimer?.cancel()
        bodyTimer = nil
        if responding {
            pendingRejection = error
        } else {
            answer(context, error)
        }
    }

    private func answer(_ context: ChannelHandlerContext, _ error: APIError) {
        var body = error.json.encoded()
        body.append(UInt8(ascii: "\n"))
        let head = HTTPResponse(status: error.status, headerFields: [.contentType: "application/json",
                                                                    .contentLength: String(body.count),
                                                                    .connection: "close"])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(ByteBuffer(bytes: body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        onReject(Int(error.status.code))
    }
}
