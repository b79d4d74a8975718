"""Request ids and the one place REST errors become envelopes.

Every answer, including aiohttp's own 404, 405 and 413 and any unexpected
exception, leaves in its door's envelope: `{success: false, message, error:
{code, message, details}}` on `/api/v1`, `{code, message, data: {error,
details}, timestamp}` on the Go Chat Web door (`handlers.gochat.common`).
Unexpected exceptions are logged with their stack and answered as a generic 500; a store that
cannot be used right now (`StoreUnavailable`) is a 503 `SYS_001` with `Retry-After`, logged in one line.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from handlers.gochat.common import error_response as door_error_response
from handlers.gochat.common import is_door_path
from models.errors import (
    AppError,
    BadRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    RateLimited,
    RouteNotFound,
    ServiceUnavailable,
)
from models.store.base import StoreUnavailable
from server.logs import request_id

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SOCKETIO_PATH = "/socket.io/"
_REQUEST_ID = re.compile(r"^[\w.:-]{1,128}$")
# the id of the request, as it was answered in X-Request-ID (`server.run.AccessLogger` reads it)
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)


def whatschat_error_response(error: AppError) -> web.Response:
    body = {"success": False, "message": error.message, "error": error.to_dict()}
    response = web.Response(body=orjson.dumps(body), status=error.status, content_type="application/json")
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _from_http(exc: web.HTTPException) -> AppError:
    if exc.status == 404:
        return RouteNotFound()
    if exc.status == 405:
        return MethodNotAllowed()
    if exc.status == 413:
        return PayloadTooLarge("Request body too large")
    if 400 <= exc.status < 500:
        return BadRequest(exc.reason)
    return AppError()


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Echo a sane `X-Request-ID` or make one; logs of this request carry it."""
    given = request.headers.get("X-Request-ID", "")
    rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
    request[REQUEST_ID] = rid  # for the access log, written after this context variable is reset
    token = request_id.set(rid)
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers["X-Request-ID"] = rid
            raise
        response.headers["X-Request-ID"] = rid
        return response
    finally:
        request_id.reset(token)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    error_response = door_error_response if is_door_path(request.path) else whatschat_error_response
    try:
        return await handler(request)
    except AppError as exc:
        return error_response(exc)
    except StoreUnavailable as exc:
        # the database is away (locked, disk, connection lost): the client may retry, nothing is a bug
        log.warning("%s %s: store unavailable: %s", request.method, request.path, exc)
        response = error_response(ServiceUnavailable("Service unavailable: the database cannot be used right now"))
        response.headers["Retry-After"] = "1"
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(_from_http(exc))
        if "Allow" in exc.headers:  # a 405 must say which methods the resource has
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except ValueError as exc:
        if request.path.startswith(SOCKETIO_PATH):
            # python-engineio raises out of its transport on a frame that is not an
            # Engine.IO packet at all: the connection ends, as that protocol says
            log.warning("malformed Engine.IO frame on %s: %s", request.path, exc)
            return error_response(BadRequest("Malformed Engine.IO frame"))
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(AppError())
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(AppError())
