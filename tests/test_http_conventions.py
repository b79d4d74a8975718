"""What every REST answer shares: the envelope, status codes, request ids, auth, health."""

from __future__ import annotations

import re

import pytest

from server.keys import SERVICES, STORE
from tests.rest_support import assert_error, raw, running

API = "/api/v1"


# the envelope on aiohttp's own errors


@pytest.mark.parametrize("path", ["/api/v1/nope", "/nope", "/api/v1/users/x/y/z"])
async def test_unknown_route_is_a_json_404(api, server, path):
    answer = await raw(api.session, "GET", server.url + path)
    assert_error(answer.status, answer.body, 404, "RES_002")
    assert answer.headers["Content-Type"].startswith("application/json")


async def test_wrong_method_is_a_json_405_naming_the_allowed_ones(api, server):
    answer = await raw(api.session, "DELETE", server.api + "/auth/login")
    assert answer.status == 405
    assert answer.body["success"] is False and answer.body["error"]["code"]
    assert answer.headers["Content-Type"].startswith("application/json")
    assert "POST" in answer.headers.get("Allow", "")


async def test_bad_json_is_400(api, make_user):
    status, body = await api.post(
        "/auth/login", data=b'{"email": "a@example.com", ', headers={"Content-Type": "application/json"}
    )
    assert_error(status, body, 400, "VAL_001")


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b'{"email": "a@example.com", "password": "Passw0rd"}', "text/plain"),
        (b"email=a%40example.com&password=Passw0rd", "application/x-www-form-urlencoded"),
    ],
)
async def test_wrong_content_type_is_400(api, data, content_type):
    status, body = await api.post("/auth/login", data=data, headers={"Content-Type": content_type})
    assert_error(status, body, 400, "VAL_001")


async def test_json_that_is_not_an_object_is_422(api):
    status, body = await api.post("/auth/login", json=["a@example.com", "Passw0rd"])
    assert_error(status, body, 422, "VAL_001")


async def test_body_over_the_limit_is_a_json_413(config):
    async with running(config.replace(server={"max_body_size": 2048})) as (srv, api):
        fits = {"username": "small_body", "email": "small_body@example.com", "password": "Passw0rd"}
        status, _ = await api.post("/auth/register", json=fits)
        assert status == 201
        too_big = {**fits, "username": "big_body", "email": "big_body@example.com", "padding": "x" * 4096}
        answer = await raw(api.session, "POST", srv.api + "/auth/register", json=too_big)
        assert_error(answer.status, answer.body, 413, "VAL_001")  # docs/protocol.md: FILE_001 is for uploads
        assert answer.headers["Content-Type"].startswith("application/json")
        assert answer.headers.get("X-Request-ID")
        # the server is fine afterwards and the oversized request created nothing
        status, body = await api.post("/auth/login", json={"email": "big_body@example.com", "password": "Passw0rd"})
        assert_error(status, body, 401, "AUTH_003")


# tokens


async def test_missing_token_is_401(api):
    for method, path in (("GET", "/auth/me"), ("GET", "/users"), ("PUT", "/status"), ("POST", "/auth/logout")):
        status, body = await api.call(method, path)
        assert_error(status, body, 401, "AUTH_001")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer garbage",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
    ],
)
async def test_bad_tokens_are_401(api, make_user, header):
    await make_user()
    status, body = await api.get("/auth/me", headers={"Authorization": header})
    assert_error(status, body, 401, "AUTH_001")


async def test_a_refresh_token_is_not_an_access_token(api, make_user):
    alice = await make_user()
    status, body = await api.get("/auth/me", token=alice.refresh_token)
    assert_error(status, body, 401, "AUTH_001")
    status, _ = await api.get("/auth/me", token=alice.token)
    assert status == 200


async def test_a_token_signed_with_another_secret_is_401(api, make_user, config):
    from models.tokens import TokenSigner

    alice = await make_user()
    forged = TokenSigner("not the server secret, but long enough" * 2, 3600, 3600).issue("access", alice.id, "whatever")
    status, body = await api.get("/auth/me", token=forged)
    assert_error(status, body, 401, "AUTH_001")


# request ids


async def test_request_id_is_echoed_or_generated(api, server):
    given = await raw(api.session, "GET", server.api + "/status", headers={"X-Request-ID": "client-id.42:a_b"})
    assert given.status == 200 and given.headers["X-Request-ID"] == "client-id.42:a_b"

    made = [await raw(api.session, "GET", server.api + "/status") for _ in range(2)]
    ids = [answer.headers["X-Request-ID"] for answer in made]
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in ids) and ids[0] != ids[1]

    # a header that is not a sane id is replaced, not echoed
    odd = await raw(api.session, "GET", server.api + "/status", headers={"X-Request-ID": "x" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["X-Request-ID"])


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/api/v1/nope", {}, 404),
        ("DELETE", "/api/v1/auth/login", {}, 405),
        ("GET", "/api/v1/auth/me", {}, 401),
        ("POST", "/api/v1/auth/login", {"data": b"{", "headers": {"Content-Type": "application/json"}}, 400),
        ("POST", "/api/v1/auth/register", {"json": {}}, 422),
    ],
)
async def test_request_id_on_error_answers(api, server, method, path, kwargs, status):
    headers = dict(kwargs.pop("headers", {}))
    answer = await raw(api.session, method, server.url + path, headers=headers, **kwargs)
    assert answer.status == status
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["X-Request-ID"])
    answer = await raw(api.session, method, server.url + path, headers={**headers, "X-Request-ID": "err-1"}, **kwargs)
    assert answer.status == status and answer.headers["X-Request-ID"] == "err-1"


# unexpected errors


async def test_unexpected_exception_is_a_generic_500(api, server, make_user, monkeypatch):
    alice = await make_user()

    async def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail /etc/passwd")

    monkeypatch.setattr(server.app[SERVICES].users, "search", broken)
    answer = await raw(api.session, "GET", server.api + "/users", token=alice.token, headers={"X-Request-ID": "boom"})
    assert_error(answer.status, answer.body, 500, "SYS_001")
    text = str(answer.body)
    assert "secret internal detail" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert answer.headers["X-Request-ID"] == "boom"
    # the next request is served normally
    status, _ = await api.get("/auth/me", token=alice.token)
    assert status == 200


# health


async def test_health(api):
    status, body = await api.get("/health")
    assert status == 200 and body["success"] is True
    data = body["data"]
    assert data["status"] == "healthy"
    assert data["services"]["database"] == "healthy"
    assert data["services"]["websocket"] == "healthy"
    assert data["version"] and data["timestamp"].endswith("Z")
    assert isinstance(data["uptime"], int | float) and data["uptime"] >= 0


async def test_health_is_503_when_the_database_is_down(api, server):
    await server.app[STORE].close()
    status, body = await api.get("/health")
    assert status == 503
    assert body["success"] is False
    assert body["error"]["code"] == "SYS_001"
    assert body["data"]["status"] == "unhealthy"
    assert body["data"]["services"]["database"] == "unhealthy"
