"""What every handler of the `/api` door uses: its envelope, its error names, its paths."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from aiohttp import web

from models.errors import (
    AppError,
    BadRequest,
    CallFailed,
    ChatNotFound,
    Conflict,
    Forbidden,
    MessageRejected,
    MethodNotAllowed,
    NotFound,
    ParticipantsOffline,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    TokenExpired,
    Unauthenticated,
    UploadRejected,
    UserNotFound,
    ValidationFailed,
    WrongCredentials,
)

API = "/api"
WS = "/ws"

# the door's `error` names, most specific class first: one table, read by REST answers and `/ws` frames
ERROR_NAMES: tuple[tuple[type[AppError], str], ...] = (
    (TokenExpired, "auth_token_expired"),
    (WrongCredentials, "invalid_credentials"),
    (Unauthenticated, "unauthorized"),
    (ValidationFailed, "validation_failed"),
    (PayloadTooLarge, "payload_too_large"),
    (BadRequest, "bad_request"),
    (Forbidden, "forbidden"),
    (ChatNotFound, "not_found"),
    (UserNotFound, "not_found"),
    (NotFound, "not_found"),
    (MethodNotAllowed, "method_not_allowed"),
    (Conflict, "conflict"),
    (CallFailed, "conflict"),
    (ParticipantsOffline, "conflict"),
    (RateLimited, "rate_limited"),
    (MessageRejected, "message_rejected"),
    (UploadRejected, "upload_rejected"),
    (ServiceUnavailable, "service_unavailable"),
)
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def is_door_path(path: str) -> bool:
    """Whether a request belongs to this door (its errors take this door's envelope)."""
    return path == WS or (path.startswith(f"{API}/") and not path.startswith(f"{API}/v1/") and path != f"{API}/v1")


def error_name(error: AppError) -> str:
    return next((name for cls, name in ERROR_NAMES if isinstance(error, cls)), "internal_error")


def snake(name: str) -> str:
    return _CAMEL.sub(r"_\1", name).lower()


def error_details(error: AppError) -> Any:
    """The domain's details with this door's field names (`replyTo` is `reply_to` here)."""
    details = error.details
    if isinstance(details, dict):
        return {snake(str(key)): value for key, value in details.items()}
    return details


def body(code: int, message: str, data: Any = None) -> bytes:
    out: dict[str, Any] = {"code": code, "message": message, "data": data, "timestamp": int(time.time())}
    # a list field's validation messages are keyed by item index (`{"member_ids": {0: [...]}}`)
    return orjson.dumps(out, option=orjson.OPT_NON_STR_KEYS)


def envelope(data: Any = None, message: str = "success", status: int = 200) -> web.Response:
    """`{code, message, data, timestamp}`, with the HTTP status equal to `code`."""
    return web.Response(body=body(status, message, data), status=status, content_type="application/json")


def error_data(error: AppError) -> dict[str, Any]:
    """`{error, details}`; a conflict that names the existing chat says it beside them (`chat_id`)."""
    data: dict[str, Any] = {"error": error_name(error)}
    details = error_details(error)
    if details is not None:
        data["details"] = details
        if isinstance(error, Conflict) and isinstance(details, dict) and "chat_id" in details:
            data["chat_id"] = details["chat_id"]
    return data


def error_response(error: AppError) -> web.Response:
    """Every failure of this door, rendered once: the envelope with `data: {error, details}`."""
    response = web.Response(
        body=body(error.status, error.message, error_data(error)),
        status=error.status,
        content_type="application/json",
    )
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = str(error.retry_after)
    return response
