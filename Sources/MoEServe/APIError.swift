import Foundation
import Hummingbird

/// An error answered in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?

    public init(status: HTTPResponse.Status, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    public var description: String { "\(status.code) \(type): \(message)" }

    static func invalidRequest(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(status: .badRequest, message: message, type: "invalid_request_error", param: param, code: code)
    }

    static func invalidType(_ param: String, expected: String, got value: JSONValue) -> APIError {
        invalidRequest("'\(param)' must be \(expected), got \(value.typeName)", param: param, code: "invalid_type")
    }

    static func invalidValue(_ param: String, _ message: String) -> APIError {
        invalidRequest("'\(param)' \(message)", param: param, code: "invalid_value")
    }

    static func unsupported(_ param: String, _ message: String) -> APIError {
        invalidRequest("'\(param)' \(message)", param: param, code: "unsupported_parameter")
    }

    static let invalidAPIKey = APIError(status: .unauthorized,
                                        message: "Incorrect or missing API key: send 'Authorization: Bearer <key>'",
                                        type: "invalid_request_error", code: "invalid_api_key")

    static func modelNotFound(_ name: String) -> APIError {
        APIError(status: .notFound, message: "The model '\(clipped(name))' does not exist", type: "invalid_request_error",
                 param: "model", code: "model_not_found")
    }

    /// A client's value quoted in a message, cut to a length that cannot bloat the reply.
    static func clipped(_ text: String, to limit: Int = 64) -> String {
        text.count <= limit ? text : String(text.prefix(limit)) + "…"
    }

    static func notFound(_ path: String) -> APIError {
        APIError(status: .notFound, message: "no endpoint \(clipped(path))", type: "invalid_request_error", code: "not_found")
    }

    static func methodNotAllowed(_ method: String, _ path: String) -> APIError {
        APIError(status: .methodNotAllowed, message: "\(clipped(method)) is not allowed on \(clipped(path))",
                 type: "invalid_request_error", code: "method_not_allowed")
    }

    static func bodyTooLarge(limit: Int) -> APIError {
        APIError(status: .contentTooLarge, message: "the request body is larger than the limit of \(limit) bytes",
                 type: "invalid_request_error", code: "request_too_large")
    }

    static func contextOverflow(limit: Int, prompt: Int, completion: Int, param: String) -> APIError {
        // max_tokens may be as large as Int.max: the sum is told without overflowing.
        let (sum, overflow) = prompt.addingReportingOverflow(completion)
        return invalidRequest("This model's maximum context length is \(limit) tokens. However, you requested "
                       + "\(overflow ? "more than \(Int.max)" : String(sum)) tokens (\(prompt) in the prompt, \(completion) in the completion). "
                       + "Please reduce the prompt or the completion length.",
                       param: param, code: "context_length_exceeded")
    }

    static let queueFull = APIError(status: .serviceUnavailable,
                                    message: "the server is at capacity: too many requests are waiting; retry later",
                                    type: "server_error", code: "queue_full")

    static let shuttingDownMessage = "the server is shutting down"

    static let shuttingDown = APIError(status: .serviceUnavailable, message: shuttingDownMessage,
                                       type: "server_error", code: "shutting_down")

    static func internalError(_ message: String) -> APIError {
        APIError(status: .internalServerError, message: message, type: "server_error", code: "internal_error")
    }

    var json: JSONValue {
        .object(["error": .object([
            "message": .string(message),
            "type": .string(type),
            "param": param.map(JSONValue.string) ?? .null,
            "code": code.map(JSONValue.string) ?? .null,
        ])])
    }

    var response: Response { jsonResponse(json, status: status) }
}

func jsonResponse(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
    var data = value.encoded()
    data.append(UInt8(ascii: "\n"))
    return Response(status: status, headers: [.contentType: "application/json"],
                    body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
}
