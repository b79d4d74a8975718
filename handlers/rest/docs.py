"""Serving the published documents: `/api/v1/openapi.json`, `/api/v1/asyncapi.json`, `/api/openapi.json`, `/docs`.

The documents are built once at start-up: OpenAPI for each REST door (`/api/v1`,
and `/api` for the Go Chat Web door, whose clients look for it under their own
base URL), AsyncAPI for Socket.IO and `/ws`. `/docs` is a page the project ships
(no script from the internet) that renders them for people.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from handlers.apispec import GOCHAT, build_asyncapi, build_openapi
from handlers.gochat.common import API as GO_API
from handlers.rest.apidoc import doc
from handlers.rest.auth import API

DOCS_PAGE = Path(__file__).resolve().parent.parent / "static" / "docs.html"
DOCUMENTS: web.AppKey[dict[str, bytes]] = web.AppKey("api_documents")


async def build_documents(app: web.Application) -> None:
    documents: dict[str, Any] = {
        "openapi": build_openapi(app),
        "asyncapi": build_asyncapi(),
        "gochat_openapi": build_openapi(app, GOCHAT),
    }
    app[DOCUMENTS] = {name: orjson.dumps(body) for name, body in documents.items()}


def _document(name: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=request.app[DOCUMENTS][name], content_type="application/json")

    return handler


openapi_json = doc(summary="This OpenAPI document", tag="docs", shape="file", auth=False)(_document("openapi"))
asyncapi_json = doc(summary="The AsyncAPI document of the Socket.IO side", tag="docs", shape="file", auth=False)(
    _document("asyncapi")
)
gochat_openapi_json = doc(summary="This OpenAPI document", tag="docs", shape="file", auth=False)(
    _document("gochat_openapi")
)


async def docs_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(DOCS_PAGE, headers={"Content-Type": "text/html; charset=utf-8"})


routes = [
    web.get(f"{API}/openapi.json", openapi_json, allow_head=False),
    web.get(f"{API}/asyncapi.json", asyncapi_json, allow_head=False),
    web.get(f"{GO_API}/openapi.json", gochat_openapi_json, allow_head=False),
    web.get("/docs", docs_page, allow_head=False),
]
