"""The web client's files as the server ships them: what a browser gets before any script runs."""

from __future__ import annotations

import re

from aiohttp import ClientSession

from handlers.rest import web as rest_web
from tests.conftest import Server

LOCAL_REF = re.compile(r"""(?:src|href)="([^"]+)\"""")


async def test_the_page_and_every_file_it_names_are_served_from_this_server(web_server: Server) -> None:
    async with ClientSession() as http:
        async with http.get(web_server.url + "/") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            policy = response.headers["Content-Security-Policy"]
            page = await response.text()
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy
        refs = [ref for ref in LOCAL_REF.findall(page) if not ref.startswith("#")]
        assert "/app/app.js" in refs and "/app/style.css" in refs
        for ref in refs:
            assert ref.startswith("/") or ref.startswith("data:"), f"{ref} is not on this server"
        # the modules app.js imports, the socket.io-client bundle among them
        names = ["app.js", "style.css", "js/api.js", "js/calls.js", "js/dom.js", "vendor/socket.io.esm.min.js"]
        for name in names:
            async with http.get(f"{web_server.url}/app/{name}") as response:
                assert response.status == 200, name
                kind = "text/css" if name.endswith(".css") else "text/javascript"
                assert response.headers["Content-Type"].startswith(kind), name
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                body = await response.text()
            if name.endswith(".js") and not name.startswith("vendor/"):
                for spec in re.findall(r"""from "([^"]+)";""", body):
                    assert spec.startswith("./") or spec.startswith("../"), f"{name} imports {spec} from elsewhere"
                assert "http://" not in body and "https://" not in body, f"{name} names an outside address"


async def test_only_the_clients_own_files_are_reachable(web_server: Server) -> None:
    async with ClientSession() as http:
        for path in (
            "/app/package.json",
            "/app/package-lock.json",
            "/app/node_modules/socket.io-client/package.json",
            "/app/index.html",
            "/app/../server/config.py",
            "/app/%2e%2e/server/config.py",
            "/app/js/../../setup.cfg",
            "/app/.gitignore",
            "/app/missing.js",
        ):
            async with http.get(web_server.url + path) as response:
                assert response.status == 404, path
                body = await response.json()
                assert body["error"]["code"] == "RES_002", path


async def test_an_unbuilt_client_says_how_to_build_it(web_server: Server, monkeypatch) -> None:
    monkeypatch.setattr(rest_web, "BUNDLE", rest_web.WEB_DIR / "vendor" / "not-there.js")
    async with ClientSession() as http, http.get(web_server.url + "/") as response:
        assert response.status == 503
        assert "make web" in await response.text()
