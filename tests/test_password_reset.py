"""Forgotten passwords: no account enumeration, mail by outbox or real SMTP, single-use tokens."""

from __future__ import annotations

import asyncio
import email
import hashlib
import re
from email.message import Message
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from server.keys import STORE
from tests.redis_support import free_port
from tests.rest_support import assert_error, running

TOKEN = re.compile(r"reset token: (\S+)")


def _body(message: Message) -> str:
    part = message.get_payload(decode=True)
    assert isinstance(part, bytes)
    return part.decode(message.get_content_charset() or "utf-8")


def _token_of(message: Message) -> str:
    match = TOKEN.search(_body(message))
    assert match, _body(message)
    return match.group(1)


def _outbox(config) -> list[Message]:
    folder = Path(config.data_dir) / "outbox"
    files = sorted(folder.glob("*.eml")) if folder.exists() else []
    return [email.message_from_bytes(path.read_bytes()) for path in files]


async def _forgot(api, address: str) -> None:
    status, body = await api.post("/auth/forgot-password", json={"email": address})
    assert status == 200, body
    assert body["success"] is True


async def test_forgot_password_answers_the_same_for_unknown_and_known_emails(api, make_user, config):
    alice = await make_user()
    unknown = await api.post("/auth/forgot-password", json={"email": "nobody@example.com"})
    assert unknown[0] == 200
    assert _outbox(config) == []
    known = await api.post("/auth/forgot-password", json={"email": alice.email})
    assert known == unknown
    status, body = await api.post("/auth/forgot-password", json={"email": "not-an-email"})
    assert_error(status, body, 422, "VAL_001")


async def test_reset_mail_lands_in_the_outbox_without_smtp(api, make_user, config):
    alice = await make_user()
    await _forgot(api, alice.email.upper())
    (mail,) = _outbox(config)
    assert mail["To"] == alice.email
    assert mail["Subject"]
    token = _token_of(mail)
    assert token in _body(mail).replace("reset token: " + token, "")  # the link carries it too


async def test_reset_token_works_once_and_revokes_every_session(api, make_user, config):
    alice = await make_user()
    second = (await api.post("/auth/login", json={"email": alice.email, "password": alice.password}))[1]["data"]
    await _forgot(api, alice.email)
    token = _token_of(_outbox(config)[0])

    status, body = await api.post("/auth/reset-password", json={"token": token, "newPassword": "weak"})
    assert_error(status, body, 422, "VAL_001")
    assert set(body["error"]["details"]) == {"newPassword"}

    status, body = await api.post("/auth/reset-password", json={"token": token, "newPassword": "Fr3shPassword"})
    assert status == 200, body
    for access in (alice.token, second["token"]):
        status, body = await api.get("/auth/me", token=access)
        assert_error(status, body, 401, "AUTH_001")
    status, body = await api.post("/auth/refresh-token", json={"refreshToken": second["refreshToken"]})
    assert_error(status, body, 401, "AUTH_001")

    status, body = await api.post("/auth/login", json={"email": alice.email, "password": alice.password})
    assert_error(status, body, 401, "AUTH_003")
    status, body = await api.post("/auth/login", json={"email": alice.email, "password": "Fr3shPassword"})
    assert status == 200

    status, body = await api.post("/auth/reset-password", json={"token": token, "newPassword": "Th1rdPassword"})
    assert_error(status, body, 401, "AUTH_001")
    status, _ = await api.post("/auth/login", json={"email": alice.email, "password": "Fr3shPassword"})
    assert status == 200, "a refused second use must not change the password"


async def test_unknown_and_expired_reset_tokens_are_refused(api, server, make_user):
    alice = await make_user()
    status, body = await api.post("/auth/reset-password", json={"token": "made-up", "newPassword": "Fr3shPassword"})
    assert_error(status, body, 401, "AUTH_001")

    expired = "an-expired-reset-token"
    digest = hashlib.sha256(expired.encode()).hexdigest()
    await server.app[STORE].insert_reset_token(digest, alice.id, "2000-01-01T00:00:00.000Z")
    status, body = await api.post("/auth/reset-password", json={"token": expired, "newPassword": "Fr3shPassword"})
    assert_error(status, body, 401, "AUTH_001")
    status, _ = await api.get("/auth/me", token=alice.token)
    assert status == 200
    status, _ = await api.post("/auth/login", json={"email": alice.email, "password": alice.password})
    assert status == 200


async def test_reset_tokens_are_stored_hashed(api, server, make_user, config):
    alice = await make_user()
    await _forgot(api, alice.email)
    token = _token_of(_outbox(config)[0])
    db = Path(config.data_dir) / config.database.path
    assert token.encode() not in b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


class _Inbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.received.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 Message accepted"


@pytest.fixture
async def smtp():
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    await asyncio.to_thread(controller.start)
    yield controller.port, inbox
    await asyncio.to_thread(controller.stop)


async def test_reset_mail_goes_over_smtp_when_configured(config, smtp):
    port, inbox = smtp
    mail_config = {"smtp_host": "127.0.0.1", "smtp_port": port, "sender": "WhatsChat <reset@whatschat.test>"}
    async with running(config.replace(mail=mail_config)) as (_, api):
        status, body = await api.post(
            "/auth/register", json={"username": "smtp_user", "email": "smtp_user@example.com", "password": "Passw0rd"}
        )
        assert status == 201
        old_token = body["data"]["token"]
        await _forgot(api, "nobody@example.com")
        assert inbox.received == []
        await _forgot(api, "smtp_user@example.com")
        ((recipients, mail),) = inbox.received
        assert recipients == ["smtp_user@example.com"]
        assert mail["From"] == "WhatsChat <reset@whatschat.test>"
        assert _outbox(config) == []

        token = _token_of(mail)
        status, body = await api.post("/auth/reset-password", json={"token": token, "newPassword": "Sm7pPassword"})
        assert status == 200, body
        status, _ = await api.get("/auth/me", token=old_token)
        assert status == 401
        status, _ = await api.post("/auth/login", json={"email": "smtp_user@example.com", "password": "Sm7pPassword"})
        assert status == 200


async def test_forgot_password_still_answers_200_when_smtp_is_down(config):
    mail_config = {"smtp_host": "127.0.0.1", "smtp_port": free_port()}  # nothing listens there
    async with running(config.replace(mail=mail_config)) as (_, api):
        status, _ = await api.post(
            "/auth/register", json={"username": "no_smtp", "email": "no_smtp@example.com", "password": "Passw0rd"}
        )
        assert status == 201
        status, body = await api.post("/auth/forgot-password", json={"email": "no_smtp@example.com"})
        assert status == 200 and body["success"] is True


async def test_a_reset_token_of_a_deleted_account_is_refused(api, server, make_user, config):
    alice, admin = await make_user(), await make_user()
    await server.app[STORE].update_user(admin.id, {"role": "admin"})
    await _forgot(api, alice.email)
    token = _token_of(_outbox(config)[0])
    status, _ = await api.delete(f"/users/{alice.id}", token=admin.token)
    assert status == 200
    status, body = await api.post("/auth/reset-password", json={"token": token, "newPassword": "Fr3shPassword"})
    assert_error(status, body, 401, "AUTH_001")
