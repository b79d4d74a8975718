"""The web client the project ships (`web/`): the page at `/`, its scripts and styles under `/app/`.

Only the client's own files are served: `index.html` at `/`, and under `/app/`
the names `app.js`, `style.css`, `js/*.js` and `vendor/*` (the socket.io-client
bundle `make web` copies from npm). Nothing else in `web/` (package.json,
node_modules) is reachable. Every answer forbids outside scripts, styles and
connections with a Content-Security-Policy, so the page talks only to this
server: REST under `/api/v1` and Socket.IO at `/socket.io/`, same origin, no CORS.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"
INDEX = WEB_DIR / "index.html"
BUNDLE = WEB_DIR / "vendor" / "socket.io.esm.min.js"
ASSET = re.compile(r"^(?:(?:js|vendor)/)?[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(?:js|css|map|svg|png)$")
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=()",
    "Cache-Control": "no-cache",  # revalidated each load (Last-Modified), so an update shows at once
}
NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>WhatsChat: web client not built</title></head>
<body><h1>The web client is not built yet</h1>
<p>Its Socket.IO library is copied from npm at build time. Run <code>make web</code>
(or <code>make run</code>, which does it) and reload this page.</p></body></html>
"""


async def index(request: web.Request) -> web.StreamResponse:
    if not INDEX.is_file() or not BUNDLE.is_file():
        return web.Response(
            text=NOT_BUILT, status=503, content_type="text/html", headers={"Retry-After": "30", **HEADERS}
        )
    return web.FileResponse(INDEX, headers={"Content-Type": "text/html; charset=utf-8", **HEADERS})


async def asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = WEB_DIR / name
    if not ASSET.match(name) or ".." in name or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Content-Type": TYPES[path.suffix], **HEADERS})


routes = [
    web.get("/", index),
    web.get("/app/{name:.+}", asset),
]
