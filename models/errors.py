"""One error hierarchy for the whole service.

Domain code raises these; the REST middleware and the Socket.IO base namespace
render them (the envelope of `protocol.md` and the ack `{success: false, error}`)
in exactly one place each. Anything that is not an `AppError` is a bug: it is
logged and answered as a generic `SYS_001`.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """An error a client may see: a stable code, an HTTP status, a human message."""

    code = "SYS_001"
    status = 500
    default_message = "Internal server error"

    def __init__(self, message: str | None = None, *, details: Any = None, code: str | None = None) -> None:
        self.message = message or self.default_message
        self.details = details
        if code is not None:
            self.code = code
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        return out


class BadRequest(AppError):
    """Malformed request: bad JSON, wrong content type."""

    code, status, default_message = "VAL_001", 400, "Malformed request"


class ValidationFailed(AppError):
    """Input that parsed but broke a rule; `details` maps each field to messages."""

    code, status, default_message = "VAL_001", 422, "Validation failed"


class Unauthenticated(AppError):
    """No token, or a bad, expired or revoked one."""

    code, status, default_message = "AUTH_001", 401, "Invalid or expired token"


class TokenExpired(Unauthenticated):
    """A token that was good but is past its time: the client should refresh, not log in again."""

    default_message = "Token has expired"


class UserNotFound(AppError):
    code, status, default_message = "AUTH_002", 404, "User not found"


class WrongCredentials(AppError):
    code, status, default_message = "AUTH_003", 401, "Invalid email or password"


class Forbidden(AppError):
    code, status, default_message = "AUTH_004", 403, "Not allowed"


class MessageRejected(AppError):
    code, status, default_message = "MSG_001", 400, "Message rejected"


class ChatNotFound(AppError):
    """Also what a non-member gets, so chat ids cannot be probed."""

    code, status, default_message = "MSG_002", 404, "Chat not found"


class CallFailed(AppError):
    code, status, default_message = "CALL_001", 409, "Call cannot start or continue"


class ParticipantsOffline(AppError):
    code, status, default_message = "CALL_002", 409, "Participants are offline"


class Conflict(AppError):
    code, status, default_message = "RES_001", 409, "Resource already exists"


class NotFound(AppError):
    code, status, default_message = "RES_002", 404, "Resource not found"


class RouteNotFound(NotFound):
    default_message = "No such endpoint"


class MethodNotAllowed(AppError):
    code, status, default_message = "RES_002", 405, "Method not allowed"


class RateLimited(AppError):
    """`retry_after` (seconds) goes into the details and the Retry-After header."""

    code, status, default_message = "RATE_001", 429, "Too many requests"

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        self.retry_after = max(1, int(retry_after + 0.999))
        super().__init__(message, details={"retryAfter": self.retry_after})


class PayloadTooLarge(AppError):
    code, status, default_message = "VAL_001", 413, "Payload too large"


class UploadRejected(AppError):
    code, status, default_message = "FILE_001", 400, "Upload rejected"


class ServiceUnavailable(AppError):
    code, status, default_message = "SYS_001", 503, "Service unavailable"
