"""Browsers on other origins can call the REST API (preflight and simple requests)."""

from __future__ import annotations

import pytest

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
