"""What every REST handler uses: read input, know the caller, answer an envelope."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from marshmallow import Schema

from models.auth import Identity
from models.documents import Page
from models.errors import BadRequest, PayloadTooLarge
from models.services import Services
from schemas.common import PaginationOut, load
from server.keys import SERVICES

_pagination = PaginationOut()


def envelope(
    data: Any = None, message: str | None = None, status: int = 200, extra: dict[str, Any] | None = None
) -> web.Response:
    body: dict[str, Any] = {"success": True, **(extra or {})}
    if message is not None:
        body["message"] = message
    if data is not None:
        body["data"] = data
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def paged(key: str, page: Page, schema: Schema) -> dict[str, Any]:
    return {key: schema.dump(page.items, many=True), "pagination": _pagination.dump(page)}


async def read_body(request: web.Request, schema: Schema) -> dict[str, Any]:
    """The JSON body validated by `schema`: 400 if it is not JSON, 413 if too big, 422 if invalid."""
    if request.content_type != "application/json":
        raise BadRequest("Content-Type must be application/json")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge("Request body too large") from None
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise BadRequest("Malformed JSON") from None
    return load(schema, data)


def read_query(request: web.Request, schema: Schema) -> dict[str, Any]:
    return load(schema, dict(request.query))


def services(request: web.Request) -> Services:
    """The domain services (`SERVICES`), the same the Socket.IO namespaces call."""
    return request.app[SERVICES]


async def caller(request: web.Request) -> Identity:
    """The authenticated caller (`Authorization: Bearer <token>`), or 401 `AUTH_001`."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    identity = await services(request).auth.authenticate(token.strip() if scheme.lower() == "bearer" else None)
    return identity
