"""Browsers on other origins can call the REST API (preflight and simple requests)."""

from __future__ import annotations

import pytest

from handlers.sio.setup import allowed_origins
from tests.conftest import start_server


async def test_preflight_and_simple_request_get_cors_headers(server, api):
    headers = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST"}
    async with api.session.options(f"{server.api}/auth/login", headers=headers) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    async with api.session.get(f"{server.api}/status", headers={"Origin": "http://app.example"}) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.fixture
async def strict_server(config):
    srv = await start_server(config.replace(server={"cors_origins": ["http://ok.example"]}))
    yield srv
    await srv.runner.cleanup()


async def test_only_listed_origins_are_allowed(strict_server, api):
    url = f"{strict_server.api}/status"
    async with api.session.get(url, headers={"Origin": "http://ok.example"}) as response:
        assert response.headers["Access-Control-Allow-Origin"] == "http://ok.example"
        assert response.headers["Vary"] == "Origin"
    async with api.session.get(url, headers={"Origin": "http://evil.example"}) as response:
        assert "Access-Control-Allow-Origin" not in response.headers


def test_socketio_origins_always_include_the_servers_own_page():
    check = allowed_origins(["http://ok.example"])
    own = {"wsgi.url_scheme": "http", "HTTP_HOST": "chat.example:3001"}
    assert check("http://ok.example", own)
    assert check("http://chat.example:3001", own)  # the web client served at /
    assert check(None, own)  # non-browser clients send no Origin
    assert not check("http://evil.example", own)
