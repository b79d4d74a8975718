"""Logs are structured and never carry a password or a token."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web

from server.app import create_app
from server.keys import SERVICES, STORE
from server.logs import JsonFormatter, TextFormatter, _Context, redact, request_id
from server.run import AccessLogger
from tests.rest_support import raw

PASSWORD = "Sup3rSecretPassw0rd"
NEW_PASSWORD = "An0therSecretPassw0rd"


class _Capture(logging.Handler):
    """Formats every record with the server's formatters; wakes waiters on a matching message."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(_Context())
        self.json, self.text = JsonFormatter(), TextFormatter()
        self.lines: list[str] = []
        self.raw: list[logging.LogRecord] = []
        self._waiters: list[tuple[str, asyncio.Event]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.raw.append(record)
        self.lines += [self.json.format(record), self.text.format(record)]
        for needle, event in self._waiters:
            if needle in record.getMessage():
                event.set()

    async def wait_for(self, needle: str) -> None:
        event = asyncio.Event()
        self._waiters.append((needle, event))
        if any(needle in r.getMessage() for r in self.raw):
            return
        await asyncio.wait_for(event.wait(), 5)


@pytest.fixture
def captured(caplog) -> Iterator[_Capture]:
    caplog.set_level(logging.DEBUG)
    handler = _Capture()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


async def test_logs_carry_no_passwords_or_tokens(api, server, sockets, captured, monkeypatch):
    status, body = await api.post(
        "/auth/register", json={"username": "log_user", "email": "log_user@example.com", "password": PASSWORD}
    )
    assert status == 201
    secrets = {PASSWORD, body["data"]["token"], body["data"]["refreshToken"]}
    status, body = await api.post("/auth/login", json={"email": "log_user@example.com", "password": PASSWORD})
    token = body["data"]["token"]
    secrets |= {token, body["data"]["refreshToken"]}
    await api.post("/auth/login", json={"email": "log_user@example.com", "password": "Wr0ngPassword"})
    status, _ = await api.get("/auth/me", token=token)
    assert status == 200
    user = await server.app[STORE].get_user_by_email("log_user@example.com")
    secrets.add(user.password_hash)  # not a password, but no business in a log either
    status, body = await api.post("/auth/refresh-token", json={"refreshToken": body["data"]["refreshToken"]})
    secrets |= {body["data"]["token"], body["data"]["refreshToken"]}
    status, _ = await api.put(
        "/auth/change-password", token=token, json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
    )
    assert status == 200
    secrets.add(NEW_PASSWORD)

    # an unexpected error while a token is in play is logged with its stack
    async def broken(*args, **kwargs):
        raise RuntimeError(f"boom with password={PASSWORD} and {token}")

    monkeypatch.setattr(server.app[SERVICES].users, "search", broken)
    status, _ = await api.get("/users", token=token)
    assert status == 500
    monkeypatch.undo()

    # a socket authenticated with ?token= in its URL, then gone (the access log is written at the end)
    sock = await sockets(token, via="query")
    await sock.seen.wait_for("authenticated")
    await sock.client.disconnect()
    await captured.wait_for("/socket.io/")

    assert captured.lines, "nothing was logged"
    assert any("token=" in r.getMessage() for r in captured.raw), "the socket URL was not logged at all"
    assert any(r.exc_info for r in captured.raw), "the 500 was not logged"
    for line in captured.lines:
        for secret in secrets:
            assert secret not in line, line


async def test_json_log_lines_carry_the_request_id(api, server, make_user, captured, monkeypatch):
    alice = await make_user()

    async def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(server.app[SERVICES].users, "search", broken)
    answer = await raw(api.session, "GET", server.api + "/users", token=alice.token, headers={"X-Request-ID": "rid-7"})
    assert answer.status == 500
    records = [r for r in captured.raw if r.levelno >= logging.ERROR]
    assert records
    entry = json.loads(JsonFormatter().format(records[0]))
    assert entry["request_id"] == "rid-7"
    assert entry["level"] == "ERROR" and entry["logger"] and entry["message"] and entry["time"]
    assert "RuntimeError" in entry["exception"]


async def test_the_access_log_carries_the_request_id(config, captured):
    """aiohttp writes the access line after the middleware has reset the context: the id comes with the request."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log_class=AccessLogger, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/api/v1/health"
            answer = await raw(session, "GET", url, headers={"X-Request-ID": "trace-42"})
            assert answer.status == 200 and answer.headers["X-Request-ID"] == "trace-42"
            answer = await raw(session, "GET", url + "?unsent=id")
            generated = answer.headers["X-Request-ID"]
        await captured.wait_for("?unsent=id")
    finally:
        await runner.cleanup()
    access = [r for r in captured.raw if r.name == "aiohttp.access"]
    assert [r.request_id for r in access] == ["trace-42", generated]
    assert '"GET /api/v1/health" 200' in TextFormatter().format(access[0])
    assert "[trace-42]" in TextFormatter().format(access[0])
    assert json.loads(JsonFormatter().format(access[1]))["request_id"] == generated


# the formatters and `redact` on their own


JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjMifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Bearer {JWT}", JWT),
        (f"GET /socket.io/?EIO=4&token={JWT}&transport=websocket", JWT),
        ("GET /socket.io/?token=opaque-value-123&EIO=4", "opaque-value-123"),
        ("login with password=hunter2Secret", "hunter2Secret"),
        ('{"email": "a@b.c", "password": "hunter2Secret"}', "hunter2Secret"),
        ('{"token": "reset-token-abc"}', "reset-token-abc"),
        ("{'refreshToken': 'refresh-xyz'}", "refresh-xyz"),
        ('{"currentPassword": "Old1pass", "newPassword": "New1pass"}', "Old1pass"),
        ('{"currentPassword": "Old1pass", "newPassword": "New1pass"}', "New1pass"),
        ('{"password": "correct horse, battery"}', "horse"),
        ('{"password": "correct horse, battery"}', "battery"),
        ("{'password': 'it\\'s mine'}", "mine"),
        ("('a@b.c', '$2b$12$KIXQJmGnL4GzHsQe6eFk9uT5wXq3vN0pL8sR2yU7iO1aE6cD4bF3m')", "KIXQJmGnL4"),
    ],
)
def test_redact(text, secret):
    cleaned = redact(text)
    assert secret not in cleaned
    assert "[token]" in cleaned or "[redacted]" in cleaned or "[hash]" in cleaned


def test_redact_leaves_ordinary_text_alone():
    text = 'GET /api/v1/users?page=2&limit=20 200 "alice@example.com"'
    assert redact(text) == text


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("whatschat.test", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    _Context().filter(record)
    return record


def test_json_formatter_output_is_valid_json_with_the_request_id():
    token = request_id.set("req-123")
    try:
        record = _record("user %s logged in", "alice", session_id="s1")
    finally:
        request_id.reset(token)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "user alice logged in"
    assert entry["request_id"] == "req-123"
    assert entry["session_id"] == "s1"
    assert entry["level"] == "INFO" and entry["logger"] == "whatschat.test"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", entry["time"])


def test_formatters_redact_arguments_and_extra_fields():
    record = _record("auth header %s", f"Bearer {JWT}", first_request_line=f"GET /socket.io/?token={JWT} HTTP/1.1")
    for line in (JsonFormatter().format(record), TextFormatter().format(record)):
        assert JWT not in line
    entry = json.loads(JsonFormatter().format(record))
    assert entry["first_request_line"].startswith("GET /socket.io/?token=[")
    assert entry["first_request_line"].endswith("] HTTP/1.1")


def test_text_formatter_shows_the_request_id():
    token = request_id.set("req-456")
    try:
        record = _record("hello")
    finally:
        request_id.reset(token)
    assert "[req-456] hello" in TextFormatter().format(record)
