"""CORS for the REST API, so browser clients on other origins can call it.

Preflight `OPTIONS` requests are answered here, before routing decides the
method is not allowed; other answers get `Access-Control-Allow-Origin` when the
request's `Origin` is allowed (`server.cors_origins`, `*` for any). Socket.IO
handles CORS for its own path (`socketio.cors_origins`).
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

METHODS = "GET, POST, PUT, DELETE, OPTIONS"
HEADERS = "Authorization, Content-Type, X-Request-ID"


def cors_middleware(origins: Iterable[str]) -> Middleware:
    allowed = set(origins)
    any_origin = "*" in allowed

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or not request.path.startswith("/api/") or not (any_origin or origin in allowed):
            return await handler(request)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = METHODS
            response.headers["Access-Control-Allow-Headers"] = HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = "*" if any_origin else origin
        response.headers["Access-Control-Expose-Headers"] = "X-Request-ID, Retry-After"
        if not any_origin:
            response.headers["Vary"] = "Origin"
        return response

    return cors
