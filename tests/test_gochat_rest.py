"""The Go Chat Web door's REST API under `/api`, tested against `/work/shared/gochat-protocol.md`.

Every endpoint of the contract is driven through aiohttp against the real server
(the `server` fixture): the envelope `{code, message, data, timestamp}` with the
HTTP status equal to `code`, the error names (`validation_failed` with per-field
details, `unauthorized`, `auth_token_expired`, `not_found`, `bad_request`,
`forbidden`, `conflict`, `payload_too_large`), auth (register, login, refresh
without rotation, logout revoking the login), users (profile, lookup, search,
status as others see it), chats, messages (history order and paging, send with
replies and `client_id`, edit, delete, mark-read, search), groups (roles, members,
ownership passing on leave) and uploads. The door is an adapter over the same
accounts and chats as `/api/v1`, so a few tests cross doors: logins both ways,
blocks and roles set through `/api/v1`, and each door keeping its own envelope.
A group edit is activity: `sort=updated_at` orders by the `updated_at` shown.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from server.config import Config
from server.keys import SERVICES
from tests.conftest import Api, Server, register
from tests.gochat_support import GO_MESSAGE_KEYS, GoApi, GoUser, go_register, ws_connect
from tests.rest_support import form, raw, running

SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
USER_KEYS = {"user_id", "name", "avatar_url", "status", "bio", "last_seen", "created_at", "updated_at"}
CHAT_KEYS = {
    "chat_id",
    "type",
    "name",
    "avatar_url",
    "description",
    "participants",
    "last_message",
    "unread_count",
    "created_at",
    "updated_at",
}
GROUP_KEYS = {
    "group_id",
    "chat_id",
    "name",
    "description",
    "avatar_url",
    "owner_id",
    "members",
    "member_count",
    "created_at",
    "updated_at",
}
UPLOAD_KEYS = {"file_id", "url", "filename", "size", "mime_type", "created_at"}


@pytest.fixture
async def go(server: Server) -> AsyncIterator[GoApi]:
    async with aiohttp.ClientSession() as session:
        yield GoApi(session, server.url)


# the envelope ---------------------------------------------------------------------------------------------------------


def snake_keys(value: Any, where: str = "data") -> None:
    """Every field name in an answer is snake_case."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert SNAKE.match(key), f"{where}.{key} is not snake_case"
            snake_keys(item, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            snake_keys(item, where)


def is_unix(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 1_600_000_000


def ok(status: int, body: Any, code: int = 200) -> Any:
    """The success envelope with `code`; answers its `data`."""
    assert status == code, body
    assert set(body) == {"code", "message", "data", "timestamp"}, body
    assert body["code"] == status, body
    assert isinstance(body["message"], str) and body["message"], body
    assert is_unix(body["timestamp"]), body
    snake_keys(body["data"])
    return body["data"]


def fails(status: int, body: Any, code: int, error: str) -> dict[str, Any]:
    """The error envelope with `code` and `data.error`; answers its `data`."""
    assert status == code, body
    assert set(body) == {"code", "message", "data", "timestamp"}, body
    assert body["code"] == status, body
    assert isinstance(body["message"], str) and body["message"], body
    assert is_unix(body["timestamp"]), body
    assert isinstance(body["data"], dict) and body["data"]["error"] == error, body
    assert SNAKE.match(body["data"]["error"]), body
    return body["data"]


def without_timestamp(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "timestamp"}


# helpers --------------------------------------------------------------------------------------------------------------


async def private_chat(go: GoApi, a: GoUser, b: GoUser) -> dict[str, Any]:
    return ok(*await go.post("/chats/private", token=a.token, json={"participant_id": b.id}), code=201)


async def send(go: GoApi, user: GoUser, chat_id: str, content: str, **extra: Any) -> dict[str, Any]:
    return ok(*await go.post(f"/chats/{chat_id}/messages", token=user.token, json={"content": content, **extra}), 201)


async def new_group(go: GoApi, owner: GoUser, members: list[GoUser], name: str = "Team") -> dict[str, Any]:
    body = {"name": name, "member_ids": [m.id for m in members]}
    return ok(*await go.post("/groups", token=owner.token, json=body), code=201)


async def get_group(go: GoApi, user: GoUser, group_id: str) -> dict[str, Any]:
    return ok(*await go.get(f"/groups/{group_id}", token=user.token))


async def make_admin(api: Api, by: GoUser, group_id: str, user: GoUser) -> None:
    """Roles are set through `/api/v1` (this door has no route for them)."""
    status, body = await api.put(
        f"/groups/{group_id}/participants/{user.id}/role", token=by.token, json={"role": "admin"}
    )
    assert status == 200, body


async def history(go: GoApi, user: GoUser, chat_id: str, query: str = "") -> dict[str, Any]:
    return ok(*await go.get(f"/chats/{chat_id}/messages{query}", token=user.token))


def ids(items: list[dict[str, Any]], key: str = "message_id") -> list[str]:
    return [item[key] for item in items]


def roles(group: dict[str, Any]) -> dict[str, str]:
    return {m["user_id"]: m["role"] for m in group["members"]}


# the envelope and its errors ------------------------------------------------------------------------------------------


async def test_errors_share_one_envelope_with_snake_case_names(go: GoApi) -> None:
    user = await go_register(go)
    profile = ok(*await go.get("/users/profile", token=user.token))
    assert profile["user_id"] == user.id

    fails(*await go.get("/users/profile"), 401, "unauthorized")
    fails(*await go.get("/users/profile", token="not-a-token"), 401, "unauthorized")
    fails(*await go.get("/users/profile", headers={"Authorization": "Basic abc"}), 401, "unauthorized")
    fails(*await go.get("/no/such/route", token=user.token), 404, "not_found")
    fails(*await go.get("/no/such/route"), 404, "not_found")

    malformed = await go.post("/auth/login", data=b"{not json", headers={"Content-Type": "application/json"})
    fails(*malformed, 400, "bad_request")
    wrong_type = await go.post("/auth/login", data=b"email=a&password=b", headers={"Content-Type": "text/plain"})
    fails(*wrong_type, 400, "bad_request")

    data = fails(*await go.post("/auth/register", json={"email": "nope", "password": "x"}), 422, "validation_failed")
    details = data["details"]
    assert {"name", "email", "password"} <= set(details), details
    assert all(isinstance(messages, list) and messages for messages in details.values()), details


@pytest.mark.parametrize("payload", [b"[]", b"null", b'"text"', b"42", b"{}"])
async def test_bodies_that_are_not_objects_are_client_errors(go: GoApi, payload: bytes) -> None:
    status, body = await go.post("/auth/login", data=payload, headers={"Content-Type": "application/json"})
    assert 400 <= status < 500, body
    assert body["code"] == status and body["data"]["error"] in ("bad_request", "validation_failed"), body


async def test_out_of_range_paging_is_a_validation_failure(go: GoApi) -> None:
    user = await go_register(go)
    for query in ("?page=0", "?page=x", "?limit=0", "?limit=101", "?sort=name:asc", "?sort=updated_at"):
        data = fails(*await go.get(f"/chats{query}", token=user.token), 422, "validation_failed")
        assert set(data["details"]) <= {"page", "limit", "sort"} and data["details"], (query, data)


async def test_an_expired_token_is_auth_token_expired(go: GoApi, config: Config) -> None:
    user = await go_register(go)
    secret = (Path(config.data_dir) / "jwt_secret").read_text(encoding="ascii").strip()
    past = int(time.time()) - 3600
    claims = {"sub": user.id, "sid": "s1", "typ": "access", "jti": "j1", "iat": past - 60, "exp": past}
    expired = jwt.encode(claims, secret, algorithm="HS256")
    data = fails(*await go.get("/users/profile", token=expired), 401, "auth_token_expired")
    assert data["error"] == "auth_token_expired"

    refresh_claims = {**claims, "typ": "refresh"}
    expired_refresh = jwt.encode(refresh_claims, secret, algorithm="HS256")
    fails(*await go.post("/auth/refresh", json={"refresh_token": expired_refresh}), 401, "auth_token_expired")

    forged = jwt.encode({**claims, "exp": past + 7200}, "x" * 48, algorithm="HS256")
    fails(*await go.get("/users/profile", token=forged), 401, "unauthorized")


async def test_each_door_keeps_its_own_envelope(go: GoApi, api: Api) -> None:
    status, body = await api.get("/no/such/route")
    assert status == 404, body
    assert body["success"] is False and isinstance(body["error"]["code"], str), body
    assert "timestamp" not in body, body
    fails(*await go.get("/no/such/route"), 404, "not_found")

    status, body = await api.post("/auth/login", json={"email": "nobody@example.com", "password": "Passw0rd"})
    assert status == 401 and body["success"] is False, body
    fails(
        *await go.post("/auth/login", json={"email": "nobody@example.com", "password": "Passw0rd"}),
        401,
        "invalid_credentials",
    )


async def test_a_wrong_method_is_405_in_this_envelope(go: GoApi) -> None:
    status, body = await go.delete("/auth/login")
    fails(status, body, 405, "method_not_allowed")


async def test_rate_limited_answers_429_with_retry_after(config: Config) -> None:
    async with running(config.replace(limits={"messages_per_second": 0.01, "messages_burst": 1})) as (srv, v1):
        go = GoApi(v1.session, srv.url)
        a, b = await go_register(go), await go_register(go)
        chat_id = (await private_chat(go, a, b))["chat_id"]
        await send(go, a, chat_id, "first")
        answer = await raw(
            go.session, "POST", f"{srv.url}/api/chats/{chat_id}/messages", token=a.token, json={"content": "second"}
        )
        fails(answer.status, answer.body, 429, "rate_limited")
        assert int(answer.headers["Retry-After"]) >= 1, dict(answer.headers)
        assert history_total(await history(go, a, chat_id)) == 1


# auth -----------------------------------------------------------------------------------------------------------------


async def test_register_answers_201_with_the_user_and_a_server_made_username(go: GoApi, api: Api) -> None:
    answer = {"name": "Ada Lovelace", "email": "Ada@Example.com", "password": "Passw0rd"}
    user = ok(*await go.post("/auth/register", json=answer), code=201)
    assert USER_KEYS | {"email"} <= set(user), user
    assert user["email"] == "ada@example.com" and user["name"] == "Ada Lovelace" and user["avatar_url"] is None
    assert is_unix(user["created_at"]), user

    same_name = {"name": "Ada Lovelace", "email": "ada2@example.com", "password": "Passw0rd"}
    ok(*await go.post("/auth/register", json=same_name), code=201)
    usernames = []
    for email in ("ada@example.com", "ada2@example.com"):
        status, body = await api.post("/auth/login", json={"email": email, "password": "Passw0rd"})
        assert status == 200, body
        usernames.append(body["data"]["user"]["username"])
    assert all(usernames) and usernames[0] != usernames[1], usernames

    for email in ("Ada@Example.com", "ADA@example.COM"):
        status, body = await go.post("/auth/register", json={**answer, "email": email, "name": "Someone Else"})
        fails(status, body, 409, "conflict")
        assert body["message"] == "Email already exists", body

    weak = {"name": "Weak", "email": "weak@example.com", "password": "password"}
    data = fails(*await go.post("/auth/register", json=weak), 422, "validation_failed")
    assert "password" in data["details"], data
    fails(
        *await go.post("/auth/login", json={"email": "weak@example.com", "password": "password"}),
        401,
        "invalid_credentials",
    )


async def test_register_keeps_a_given_avatar_url(go: GoApi) -> None:
    body = {"name": "Pic", "email": "pic@example.com", "password": "Passw0rd", "avatar_url": "https://x.example/a.png"}
    user = ok(*await go.post("/auth/register", json=body), code=201)
    assert user["avatar_url"] == "https://x.example/a.png", user
    bad = {**body, "email": "pic2@example.com", "avatar_url": "javascript:alert(1)"}
    data = fails(*await go.post("/auth/register", json=bad), 422, "validation_failed")
    assert "avatar_url" in data["details"], data


async def test_login_answers_tokens_the_real_lifetime_and_the_user(config: Config) -> None:
    async with running(config.replace(auth={"access_token_ttl": 4321})) as (srv, v1):
        go = GoApi(v1.session, srv.url)
        ok(
            *await go.post("/auth/register", json={"name": "Li", "email": "li@example.com", "password": "Passw0rd"}),
            201,
        )
        data = ok(*await go.post("/auth/login", json={"email": "li@example.com", "password": "Passw0rd"}))
        assert set(data) == {"access_token", "refresh_token", "expires_in", "user"}, data
        assert data["expires_in"] == 4321
        assert data["user"]["email"] == "li@example.com" and data["user"]["name"] == "Li", data
        claims = jwt.decode(data["access_token"], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 4321, claims
        refreshed = ok(*await go.post("/auth/refresh", json={"refresh_token": data["refresh_token"]}))
        assert refreshed["expires_in"] == 4321, refreshed


async def test_wrong_email_and_wrong_password_answer_alike(go: GoApi) -> None:
    user = await go_register(go)
    wrong_password = await go.post("/auth/login", json={"email": user.email, "password": "Wr0ngPass"})
    wrong_email = await go.post("/auth/login", json={"email": "nobody@example.com", "password": user.password})
    for answer in (wrong_password, wrong_email):
        fails(*answer, 401, "invalid_credentials")
        assert answer[1]["message"] == "Invalid email or password", answer
    assert wrong_password[0] == wrong_email[0]
    assert without_timestamp(wrong_password[1]) == without_timestamp(wrong_email[1])


async def test_refresh_keeps_the_refresh_token_until_logout(go: GoApi) -> None:
    user = await go_register(go)
    first = ok(*await go.post("/auth/refresh", json={"refresh_token": user.refresh_token}))
    assert set(first) == {"access_token", "expires_in"}, first
    assert ok(*await go.get("/users/profile", token=first["access_token"]))["user_id"] == user.id
    second = ok(*await go.post("/auth/refresh", json={"refresh_token": user.refresh_token}))
    assert ok(*await go.get("/users/profile", token=second["access_token"]))["user_id"] == user.id
    assert ok(*await go.get("/users/profile", token=user.token))["user_id"] == user.id

    fails(*await go.post("/auth/refresh", json={"refresh_token": user.token}), 401, "unauthorized")
    fails(*await go.post("/auth/refresh", json={}), 422, "validation_failed")

    status, body = await go.post("/auth/logout", token=user.token)
    assert ok(status, body) is None
    fails(*await go.post("/auth/refresh", json={"refresh_token": user.refresh_token}), 401, "unauthorized")
    for token in (user.token, first["access_token"], second["access_token"]):
        fails(*await go.get("/users/profile", token=token), 401, "unauthorized")
    fails(*await go.post("/auth/logout", token=user.token), 401, "unauthorized")


async def test_logout_ends_only_that_login(go: GoApi) -> None:
    user = await go_register(go)
    other = ok(*await go.post("/auth/login", json={"email": user.email, "password": user.password}))
    ok(*await go.post("/auth/logout", token=user.token))
    fails(*await go.get("/users/profile", token=user.token), 401, "unauthorized")
    assert ok(*await go.get("/users/profile", token=other["access_token"]))["user_id"] == user.id


async def test_logout_closes_the_logins_websocket(go: GoApi, server: Server) -> None:
    user = await go_register(go)
    other_login = ok(*await go.post("/auth/login", json={"email": user.email, "password": user.password}))
    async with (
        ws_connect(go.session, server.url, user.token) as ws,
        ws_connect(go.session, server.url, other_login["access_token"]) as kept,
    ):
        ok(*await go.post("/auth/logout", token=user.token))
        await asyncio.wait_for(ws.closed.wait(), 5)
        assert ws.ws.close_code == 4001, ws.ws.close_code
        assert (await kept.request("ping"))["type"] == "pong"
        assert not kept.closed.is_set()


async def test_one_account_across_doors(go: GoApi, api: Api) -> None:
    go_user = await go_register(go, name="Door One")
    status, body = await api.post("/auth/login", json={"email": go_user.email, "password": go_user.password})
    assert status == 200, body
    assert body["data"]["user"]["id"] == go_user.id and body["data"]["user"]["email"] == go_user.email, body

    v1_user = await register(api)
    data = ok(*await go.post("/auth/login", json={"email": v1_user.email, "password": v1_user.password}))
    assert data["user"]["user_id"] == v1_user.id and data["user"]["email"] == v1_user.email, data
    assert ok(*await go.get("/users/profile", token=v1_user.token))["user_id"] == v1_user.id


# users ----------------------------------------------------------------------------------------------------------------


async def test_profile_is_read_and_changed_and_others_never_see_the_email(go: GoApi) -> None:
    me, other = await go_register(go, name="Me"), await go_register(go, name="Other")
    own = ok(*await go.get("/users/profile", token=me.token))
    assert USER_KEYS | {"email"} == set(own), own
    assert own["email"] == me.email and own["name"] == "Me"

    change = {"name": "New Me", "avatar_url": "https://img.example/me.png", "bio": "Hello there"}
    updated = ok(*await go.put("/users/profile", token=me.token, json=change))
    assert {k: updated[k] for k in change} == change, updated
    assert updated["email"] == me.email
    assert ok(*await go.get("/users/profile", token=me.token))["bio"] == "Hello there"

    seen = ok(*await go.get(f"/users/{me.id}", token=other.token))
    assert "email" not in seen and set(seen) == USER_KEYS, seen
    assert {k: seen[k] for k in change} == change, seen

    data = fails(
        *await go.put("/users/profile", token=me.token, json={"avatar_url": "ftp://x"}), 422, "validation_failed"
    )
    assert "avatar_url" in data["details"], data
    data = fails(*await go.put("/users/profile", token=me.token, json={"bio": "x" * 101}), 422, "validation_failed")
    assert "bio" in data["details"], data
    fails(*await go.get("/users/000000000000000000000000", token=me.token), 404, "not_found")
    fails(*await go.get(f"/users/{me.id}"), 401, "unauthorized")


async def test_user_search_matches_name_or_username_case_insensitively(go: GoApi, api: Api) -> None:
    me = await go_register(go, name="Searcher")
    for name in ("Quokka Alpha", "little quokka", "Wallaby"):
        await go_register(go, name=name)
    v1 = await register(api, name="wombat_handle")
    ok(*await go.put("/users/profile", token=v1.token, json={"name": "Plain Person"}))

    found = ok(*await go.get("/users/search?query=QUOKKA", token=me.token))
    assert sorted(u["name"] for u in found["users"]) == ["Quokka Alpha", "little quokka"], found
    assert found["pagination"] == {"page": 1, "limit": 20, "total": 2}, found
    assert all("email" not in u and set(u) == USER_KEYS for u in found["users"]), found

    by_handle = ok(*await go.get("/users/search?query=BAT_HAND", token=me.token))
    assert [u["user_id"] for u in by_handle["users"]] == [v1.id], by_handle

    first = ok(*await go.get("/users/search?query=okka&limit=1&page=1", token=me.token))
    second = ok(*await go.get("/users/search?query=okka&limit=1&page=2", token=me.token))
    assert first["pagination"] == {"page": 1, "limit": 1, "total": 2}, first
    assert second["pagination"] == {"page": 2, "limit": 1, "total": 2}, second
    assert len(first["users"]) == len(second["users"]) == 1
    assert first["users"][0]["user_id"] != second["users"][0]["user_id"]

    nobody = ok(*await go.get("/users/search?query=zzzzzz", token=me.token))
    assert nobody == {"users": [], "pagination": {"page": 1, "limit": 20, "total": 0}}, nobody

    for query in ("", "?query=", "?query=a&limit=0", "?query=a&limit=101", "?query=a&page=0"):
        data = fails(*await go.get(f"/users/search{query}", token=me.token), 422, "validation_failed")
        assert data["details"], data
    missing = fails(*await go.get("/users/search", token=me.token), 422, "validation_failed")
    assert "query" in missing["details"], missing


async def test_user_search_does_not_match_private_emails(go: GoApi) -> None:
    """The contract searches name or username; others never see an email, so it cannot be searched either."""
    me = await go_register(go, name="Searcher")
    ok(
        *await go.post(
            "/auth/register", json={"name": "Hidden", "email": "secretmailbox@example.com", "password": "Passw0rd"}
        ),
        201,
    )
    found = ok(*await go.get("/users/search?query=secretmailbox", token=me.token))
    assert found["users"] == [] and found["pagination"]["total"] == 0, found


async def test_status_is_set_and_others_see_it_while_connected(go: GoApi, server: Server) -> None:
    viewer, user = await go_register(go, name="Viewer"), await go_register(go, name="Busy")
    chat = await private_chat(go, viewer, user)

    for status in ("online", "offline", "away", "dnd"):
        data = ok(*await go.put("/users/status", token=user.token, json={"status": status}))
        assert set(data) == {"status", "last_seen"} and data["status"] == status, data
        assert data["last_seen"] is None or is_unix(data["last_seen"]), data
    for bad in ("busy", "invisible", "", None):
        data = fails(*await go.put("/users/status", token=user.token, json={"status": bad}), 422, "validation_failed")
        assert "status" in data["details"], data
    fails(*await go.put("/users/status", token=user.token, json={}), 422, "validation_failed")

    def seen_in(chat_view: dict[str, Any]) -> str:
        return next(p["status"] for p in chat_view["participants"] if p["user_id"] == user.id)

    # not connected anywhere: offline whatever was chosen
    assert seen_in(ok(*await go.get(f"/chats/{chat['chat_id']}", token=viewer.token))) == "offline"

    async with ws_connect(go.session, server.url, user.token):
        ok(*await go.put("/users/status", token=user.token, json={"status": "dnd"}))
        assert seen_in(ok(*await go.get(f"/chats/{chat['chat_id']}", token=viewer.token))) == "dnd"
        assert ok(*await go.get(f"/users/{user.id}", token=viewer.token))["status"] == "dnd"

        ok(*await go.put("/users/status", token=user.token, json={"status": "offline"}))
        assert seen_in(ok(*await go.get(f"/chats/{chat['chat_id']}", token=viewer.token))) == "offline"
        assert ok(*await go.get(f"/users/{user.id}", token=viewer.token))["status"] == "offline"

        ok(*await go.put("/users/status", token=user.token, json={"status": "away"}))
        assert seen_in(ok(*await go.get(f"/chats/{chat['chat_id']}", token=viewer.token))) == "away"


# chats ----------------------------------------------------------------------------------------------------------------


async def test_private_chat_is_created_once_per_pair(go: GoApi, api: Api) -> None:
    a = await go_register(go, name="Alice")
    b = await go_register(go, name="Bob")
    ok(*await go.put("/users/profile", token=b.token, json={"avatar_url": "https://img.example/bob.png"}))

    chat = await private_chat(go, a, b)
    assert set(chat) == CHAT_KEYS, chat
    assert chat["type"] == "private" and chat["name"] == "Bob" and chat["avatar_url"] == "https://img.example/bob.png"
    assert sorted(p["user_id"] for p in chat["participants"]) == sorted([a.id, b.id]), chat
    assert all(set(p) == {"user_id", "name", "avatar_url", "status"} for p in chat["participants"]), chat
    assert chat["last_message"] is None and chat["unread_count"] == 0, chat

    for by, other in ((a, b), (b, a)):
        status, body = await go.post("/chats/private", token=by.token, json={"participant_id": other.id})
        data = fails(status, body, 409, "conflict")
        assert body["message"] == "Chat already exists with this user", body
        assert data["chat_id"] == chat["chat_id"], data

    seen_by_b = ok(*await go.get(f"/chats/{chat['chat_id']}", token=b.token))
    assert seen_by_b["name"] == "Alice" and seen_by_b["avatar_url"] is None, seen_by_b

    data = fails(
        *await go.post("/chats/private", token=a.token, json={"participant_id": a.id}), 422, "validation_failed"
    )
    assert data["details"], data
    fails(
        *await go.post("/chats/private", token=a.token, json={"participant_id": "000000000000000000000000"}),
        404,
        "not_found",
    )
    fails(*await go.post("/chats/private", token=a.token, json={}), 422, "validation_failed")

    blocker = await go_register(go, name="Blocker")
    status, body = await api.post(f"/users/{a.id}/block", token=blocker.token)
    assert status in (200, 201), body
    fails(*await go.post("/chats/private", token=a.token, json={"participant_id": blocker.id}), 403, "forbidden")
    chats = ok(*await go.get("/chats", token=a.token))
    assert [c["chat_id"] for c in chats["chats"]] == [chat["chat_id"]], chats


async def test_chat_list_order_sort_unread_and_last_message(go: GoApi) -> None:
    a, b, c = [await go_register(go, name=n) for n in ("Ann", "Ben", "Cat")]
    ab = (await private_chat(go, a, b))["chat_id"]
    ac = (await private_chat(go, a, c))["chat_id"]
    message = await send(go, b, ab, "hi Ann")
    await send(go, b, ab, "are you there?")

    listed = ok(*await go.get("/chats", token=a.token))
    assert ids(listed["chats"], "chat_id") == [ab, ac], listed
    assert listed["pagination"] == {"page": 1, "limit": 20, "total": 2}, listed
    by_id = {c["chat_id"]: c for c in listed["chats"]}
    assert by_id[ab]["unread_count"] == 2 and by_id[ac]["unread_count"] == 0
    assert by_id[ab]["name"] == "Ben" and by_id[ac]["name"] == "Cat"
    assert all(a.id in [p["user_id"] for p in chat["participants"]] for chat in listed["chats"])
    last = by_id[ab]["last_message"]
    assert set(last) == {"message_id", "content", "sender_id", "created_at"}, last
    assert last["content"] == "are you there?" and last["sender_id"] == b.id and is_unix(last["created_at"])
    assert last["message_id"] != message["message_id"]
    assert by_id[ac]["last_message"] is None
    assert by_id[ab]["updated_at"] >= by_id[ac]["updated_at"]

    b_view = ok(*await go.get(f"/chats/{ab}", token=b.token))
    assert b_view["unread_count"] == 0, b_view

    orders = {
        "created_at:asc": [ab, ac],
        "created_at:desc": [ac, ab],
        "updated_at:desc": [ab, ac],
        "updated_at:asc": [ac, ab],
    }
    for sort, expected in orders.items():
        assert ids(ok(*await go.get(f"/chats?sort={sort}", token=a.token))["chats"], "chat_id") == expected, sort

    paged = ok(*await go.get("/chats?limit=1&page=2", token=a.token))
    assert ids(paged["chats"], "chat_id") == [ac] and paged["pagination"] == {"page": 2, "limit": 1, "total": 2}


async def test_chat_order_follows_the_updated_at_it_shows(go: GoApi, server: Server) -> None:
    """`updated_at` moves when a group is edited; `sort=updated_at` must order by that same value.

    The store is backdated (a day apart) so that whole Unix seconds tell the chats apart without waiting.
    """
    a, b = await go_register(go), await go_register(go)
    private = (await private_chat(go, a, b))["chat_id"]
    await send(go, b, private, "hi")
    group = (await new_group(go, a, [b]))["group_id"]
    store = server.app[SERVICES].chats.store
    day1, day2 = "2024-01-01T00:00:00.000Z", "2024-01-02T00:00:00.000Z"
    await store.update_chat(group, {"created_at": day1, "updated_at": day1, "last_activity": day1})
    await store.update_chat(private, {"created_at": day1, "updated_at": day2, "last_activity": day2})
    ok(*await go.put(f"/groups/{group}", token=a.token, json={"name": "Renamed"}))

    for sort, descending in (("", True), ("?sort=updated_at:desc", True), ("?sort=updated_at:asc", False)):
        chats = ok(*await go.get(f"/chats{sort}", token=a.token))["chats"]
        shown = [c["updated_at"] for c in chats]
        assert shown == sorted(shown, reverse=descending), (sort, [(c["name"], c["updated_at"]) for c in chats])


async def test_a_chat_the_caller_is_not_in_is_not_found(go: GoApi) -> None:
    a, b, outsider = await go_register(go), await go_register(go), await go_register(go)
    chat = await private_chat(go, a, b)
    assert ok(*await go.get(f"/chats/{chat['chat_id']}", token=a.token))["chat_id"] == chat["chat_id"]
    foreign = await go.get(f"/chats/{chat['chat_id']}", token=outsider.token)
    missing = await go.get("/chats/000000000000000000000000", token=outsider.token)
    fails(*foreign, 404, "not_found")
    fails(*missing, 404, "not_found")
    assert without_timestamp(foreign[1]) == without_timestamp(missing[1])
    fails(*await go.get(f"/chats/{chat['chat_id']}/messages", token=outsider.token), 404, "not_found")
    status, body = await go.post(f"/chats/{chat['chat_id']}/messages", token=outsider.token, json={"content": "x"})
    fails(status, body, 404, "not_found")


# messages -------------------------------------------------------------------------------------------------------------


async def test_send_answers_the_message(go: GoApi) -> None:
    a = await go_register(go, name="Display Name")
    b = await go_register(go)
    chat_id = (await private_chat(go, a, b))["chat_id"]
    message = await send(go, a, chat_id, "hello")
    assert set(message) >= GO_MESSAGE_KEYS, message
    assert message["chat_id"] == chat_id and message["sender_id"] == a.id
    assert message["sender_name"] == "Display Name" and message["content"] == "hello"
    assert message["type"] == "text" and message["status"] == "sent"
    assert message["reply_to"] is None and message["edited_at"] is None and is_unix(message["created_at"])

    reply = await send(go, b, chat_id, "hi back", reply_to=message["message_id"])
    assert reply["reply_to"] == message["message_id"]

    elsewhere = (await private_chat(go, a, await go_register(go)))["chat_id"]
    foreign = await send(go, a, elsewhere, "other chat")
    status, body = await go.post(
        f"/chats/{chat_id}/messages", token=a.token, json={"content": "x", "reply_to": foreign["message_id"]}
    )
    assert "reply_to" in fails(status, body, 422, "validation_failed")["details"], body
    status, body = await go.post(
        f"/chats/{chat_id}/messages", token=a.token, json={"content": "x", "reply_to": "000000000000000000000000"}
    )
    fails(status, body, 422, "validation_failed")

    for bad in ({"content": ""}, {"content": "   "}, {"content": "x", "type": "sticker"}, {}):
        data = fails(*await go.post(f"/chats/{chat_id}/messages", token=a.token, json=bad), 422, "validation_failed")
        assert data["details"], (bad, data)
    assert history_total(await history(go, a, chat_id)) == 2


def history_total(page: dict[str, Any]) -> int:
    return int(page["pagination"]["total"])


async def test_a_repeated_client_id_stores_nothing_new(go: GoApi) -> None:
    a, b = await go_register(go), await go_register(go)
    chat_id = (await private_chat(go, a, b))["chat_id"]
    first = await send(go, a, chat_id, "once", client_id="c-1")
    status, body = await go.post(
        f"/chats/{chat_id}/messages", token=a.token, json={"content": "once", "client_id": "c-1"}
    )
    again = ok(status, body, code=200)
    assert again["message_id"] == first["message_id"] and again["content"] == "once"
    page = await history(go, a, chat_id)
    assert ids(page["messages"]) == [first["message_id"]] and history_total(page) == 1

    other = await send(go, b, chat_id, "mine", client_id="c-1")  # another user's client_id is their own
    assert other["message_id"] != first["message_id"]


async def test_history_order_paging_and_deleted_messages(go: GoApi) -> None:
    a, b = await go_register(go), await go_register(go)
    chat_id = (await private_chat(go, a, b))["chat_id"]
    sent = [(await send(go, a if i % 2 else b, chat_id, f"message {i}"))["message_id"] for i in range(5)]

    newest_first = await history(go, a, chat_id)
    assert ids(newest_first["messages"]) == sent[::-1], newest_first
    assert newest_first["pagination"] == {"page": 1, "limit": 50, "total": 5}
    assert all(set(m) >= GO_MESSAGE_KEYS for m in newest_first["messages"])
    oldest_first = await history(go, a, chat_id, "?sort=created_at:asc")
    assert ids(oldest_first["messages"]) == sent
    assert ids((await history(go, a, chat_id, "?sort=created_at:desc"))["messages"]) == sent[::-1]

    page2 = await history(go, a, chat_id, "?limit=2&page=2")
    assert ids(page2["messages"]) == [sent[2], sent[1]] and page2["pagination"] == {"page": 2, "limit": 2, "total": 5}
    page3_asc = await history(go, a, chat_id, "?limit=2&page=3&sort=created_at:asc")
    assert ids(page3_asc["messages"]) == [sent[4]]

    for bad in ("?sort=updated_at:desc", "?limit=0", "?limit=101", "?page=0"):
        fails(*await go.get(f"/chats/{chat_id}/messages{bad}", token=a.token), 422, "validation_failed")

    ok(*await go.delete(f"/messages/{sent[2]}", token=b.token))
    after = await history(go, a, chat_id)
    assert ids(after["messages"]) == [sent[4], sent[3], sent[1], sent[0]] and history_total(after) == 4
    found = ok(*await go.get(f"/chats/{chat_id}/messages/search?query=message", token=a.token))
    assert sent[2] not in ids(found["messages"]) and found["pagination"]["total"] == 4, found


async def test_edit_own_messages_only(go: GoApi) -> None:
    a, b = await go_register(go), await go_register(go)
    chat_id = (await private_chat(go, a, b))["chat_id"]
    message = await send(go, a, chat_id, "typo")
    edited = ok(*await go.put(f"/messages/{message['message_id']}", token=a.token, json={"content": "fixed"}))
    assert set(edited) == {"message_id", "content", "edited_at", "status"}, edited
    assert edited["message_id"] == message["message_id"] and edited["content"] == "fixed"
    assert edited["status"] == "edited" and is_unix(edited["edited_at"])
    stored = (await history(go, b, chat_id))["messages"][0]
    assert stored["content"] == "fixed" and stored["edited_at"] == edited["edited_at"], stored

    status, body = await go.put(f"/messages/{message['message_id']}", token=b.token, json={"content": "hacked"})
    fails(status, body, 403, "forbidden")
    assert body["message"] == "You can only edit your own messages", body
    assert (await history(go, a, chat_id))["messages"][0]["content"] == "fixed"

    outsider = await go_register(go)
    status, body = await go.put(f"/messages/{message['message_id']}", token=outsider.token, json={"content": "x"})
    fails(status, body, 404, "not_found")
    fails(*await go.put("/messages/000000000000000000000000", token=a.token, json={"content": "x"}), 404, "not_found")
    data = fails(*await go.put(f"/messages/{message['message_id']}", token=a.token, json={}), 422, "validation_failed")
    assert "content" in data["details"], data


async def test_delete_by_sender_or_group_owner_or_admin(go: GoApi, api: Api) -> None:
    owner, admin, member, other = [await go_register(go, name=n) for n in ("Owner", "Admin", "Member", "Other")]
    group = await new_group(go, owner, [admin, member, other])
    gid = group["group_id"]
    await make_admin(api, owner, gid, admin)

    by_member = [(await send(go, member, gid, f"member {i}"))["message_id"] for i in range(3)]
    by_other = (await send(go, other, gid, "other's"))["message_id"]

    status, body = await go.delete(f"/messages/{by_other}", token=member.token)
    fails(status, body, 403, "forbidden")
    assert ok(*await go.delete(f"/messages/{by_member[0]}", token=member.token)) is None
    ok(*await go.delete(f"/messages/{by_member[1]}", token=owner.token))
    ok(*await go.delete(f"/messages/{by_member[2]}", token=admin.token))
    fails(*await go.delete(f"/messages/{by_member[0]}", token=member.token), 404, "not_found")
    fails(*await go.delete(f"/messages/{by_member[1]}", token=owner.token), 404, "not_found")
    assert ids((await history(go, owner, gid))["messages"]) == [by_other]

    a, b = await go_register(go), await go_register(go)
    chat_id = (await private_chat(go, a, b))["chat_id"]
    private = (await send(go, a, chat_id, "private"))["message_id"]
    fails(*await go.delete(f"/messages/{private}", token=b.token), 403, "forbidden")
    fails(*await go.delete(f"/messages/{private}", token=owner.token), 404, "not_found")


async def test_mark_read_moves_the_callers_unread_count(go: GoApi) -> None:
    reader, sender = await go_register(go), await go_register(go)
    chat_id = (await private_chat(go, reader, sender))["chat_id"]
    sent = [(await send(go, sender, chat_id, f"m{i}"))["message_id"] for i in range(3)]
    assert ok(*await go.get(f"/chats/{chat_id}", token=reader.token))["unread_count"] == 3

    state = ok(*await go.put(f"/chats/{chat_id}/mark-read", token=reader.token, json={"message_id": sent[1]}))
    assert state["chat_id"] == chat_id and state["message_id"] == sent[1] and state["unread_count"] == 1, state
    assert ok(*await go.get(f"/chats/{chat_id}", token=reader.token))["unread_count"] == 1
    status = (await history(go, sender, chat_id))["messages"]
    assert [m["status"] for m in status] == ["sent", "read", "read"], status

    state = ok(*await go.put(f"/chats/{chat_id}/mark-read", token=reader.token))
    assert state["unread_count"] == 0 and state["message_id"] == sent[2], state
    assert ok(*await go.get(f"/chats/{chat_id}", token=reader.token))["unread_count"] == 0
    assert ok(*await go.get("/chats", token=reader.token))["chats"][0]["unread_count"] == 0

    await send(go, sender, chat_id, "one more")
    state = ok(*await go.put(f"/chats/{chat_id}/mark-read", token=reader.token, json={}))
    assert state["unread_count"] == 0, state

    elsewhere = (await private_chat(go, reader, await go_register(go)))["chat_id"]
    foreign = (await send(go, reader, elsewhere, "x"))["message_id"]
    status, body = await go.put(f"/chats/{chat_id}/mark-read", token=reader.token, json={"message_id": foreign})
    assert "message_id" in fails(status, body, 422, "validation_failed")["details"], body
    outsider = await go_register(go)
    fails(*await go.put(f"/chats/{chat_id}/mark-read", token=outsider.token, json={}), 404, "not_found")


async def test_message_search_is_case_insensitive_newest_first_and_paged(go: GoApi) -> None:
    a, b = await go_register(go), await go_register(go)
    chat_id = (await private_chat(go, a, b))["chat_id"]
    hits = []
    for i, content in enumerate(["Hello world", "nothing here", "say HELLO", "hello again", "bye"]):
        message = await send(go, a if i % 2 else b, chat_id, content)
        if "hello" in content.lower():
            hits.append(message["message_id"])

    found = ok(*await go.get(f"/chats/{chat_id}/messages/search?query=hElLo", token=a.token))
    assert ids(found["messages"]) == hits[::-1], found
    assert found["pagination"] == {"page": 1, "limit": 20, "total": 3}, found
    page = ok(*await go.get(f"/chats/{chat_id}/messages/search?query=hello&limit=2&page=2", token=a.token))
    assert ids(page["messages"]) == [hits[0]] and page["pagination"] == {"page": 2, "limit": 2, "total": 3}

    for query in ("", "?query="):
        data = fails(*await go.get(f"/chats/{chat_id}/messages/search{query}", token=a.token), 422, "validation_failed")
        assert "query" in data["details"], data
    fails(*await go.get(f"/chats/{chat_id}/messages/search?query=a&limit=101", token=a.token), 422, "validation_failed")
    outsider = await go_register(go)
    fails(*await go.get(f"/chats/{chat_id}/messages/search?query=hello", token=outsider.token), 404, "not_found")


# groups ---------------------------------------------------------------------------------------------------------------


async def test_create_group_makes_the_creator_its_owner(go: GoApi) -> None:
    owner, member = await go_register(go, name="Owner"), await go_register(go, name="Member")
    body = {
        "name": "Club",
        "description": "A club",
        "avatar_url": "https://img.example/g.png",
        "member_ids": [member.id],
    }
    group = ok(*await go.post("/groups", token=owner.token, json=body), code=201)
    assert set(group) == GROUP_KEYS, group
    assert group["name"] == "Club" and group["description"] == "A club" and group["avatar_url"] == body["avatar_url"]
    assert group["owner_id"] == owner.id and group["member_count"] == 2
    assert roles(group) == {owner.id: "owner", member.id: "member"}, group
    assert all(set(m) == {"user_id", "name", "avatar_url", "role", "joined_at"} for m in group["members"])
    assert all(is_unix(m["joined_at"]) for m in group["members"])
    assert group["chat_id"] == group["group_id"]

    assert await get_group(go, member, group["group_id"]) == group
    chat = ok(*await go.get(f"/chats/{group['chat_id']}", token=member.token))
    assert chat["type"] == "group" and chat["name"] == "Club", chat

    alone = await new_group(go, owner, [], name="Solo")
    assert roles(alone) == {owner.id: "owner"} and alone["member_count"] == 1
    myself = ok(*await go.post("/groups", token=owner.token, json={"name": "Me", "member_ids": [owner.id]}), 201)
    assert roles(myself) == {owner.id: "owner"}

    before = ok(*await go.get("/chats", token=owner.token))["pagination"]["total"]
    unknown = {"name": "Nope", "member_ids": [member.id, "000000000000000000000000"]}
    status, answer = await go.post("/groups", token=owner.token, json=unknown)
    assert status in (404, 422), answer
    fails(status, answer, status, "not_found" if status == 404 else "validation_failed")
    assert ok(*await go.get("/chats", token=owner.token))["pagination"]["total"] == before
    assert ok(*await go.get("/chats", token=member.token))["pagination"]["total"] == 1

    invalid: list[dict[str, Any]] = [
        {"member_ids": []},
        {"name": "", "member_ids": []},
        {"name": "x"},
        {"name": "x", "member_ids": "a"},
    ]
    for bad in invalid:
        fails(*await go.post("/groups", token=owner.token, json=bad), 422, "validation_failed")
    fails(*await go.post("/groups", json={"name": "x", "member_ids": []}), 401, "unauthorized")


async def test_group_get_update_and_delete_rights(go: GoApi, api: Api) -> None:
    owner, admin, member, outsider = [await go_register(go) for _ in range(4)]
    gid = (await new_group(go, owner, [admin, member]))["group_id"]
    await make_admin(api, owner, gid, admin)
    assert roles(await get_group(go, owner, gid)) == {owner.id: "owner", admin.id: "admin", member.id: "member"}

    fails(*await go.get(f"/groups/{gid}", token=outsider.token), 404, "not_found")
    fails(*await go.get("/groups/000000000000000000000000", token=owner.token), 404, "not_found")
    private = (await private_chat(go, owner, outsider))["chat_id"]
    fails(*await go.get(f"/groups/{private}", token=owner.token), 404, "not_found")

    renamed = ok(*await go.put(f"/groups/{gid}", token=owner.token, json={"name": "Renamed", "description": "d"}))
    assert renamed["name"] == "Renamed" and renamed["description"] == "d"
    by_admin = ok(*await go.put(f"/groups/{gid}", token=admin.token, json={"avatar_url": "https://img.example/x.png"}))
    assert by_admin["avatar_url"] == "https://img.example/x.png" and by_admin["name"] == "Renamed"
    fails(*await go.put(f"/groups/{gid}", token=member.token, json={"name": "Mine"}), 403, "forbidden")
    fails(*await go.put(f"/groups/{gid}", token=outsider.token, json={"name": "Mine"}), 404, "not_found")
    fails(*await go.put(f"/groups/{gid}", token=owner.token, json={"name": ""}), 422, "validation_failed")
    assert (await get_group(go, member, gid))["name"] == "Renamed"

    fails(*await go.delete(f"/groups/{gid}", token=admin.token), 403, "forbidden")
    fails(*await go.delete(f"/groups/{gid}", token=member.token), 403, "forbidden")
    fails(*await go.delete(f"/groups/{gid}", token=outsider.token), 404, "not_found")
    assert ok(*await go.delete(f"/groups/{gid}", token=owner.token)) is None
    for user in (owner, admin, member):
        fails(*await go.get(f"/groups/{gid}", token=user.token), 404, "not_found")


async def test_adding_members(go: GoApi, api: Api) -> None:
    owner, admin, member, newcomer, later = [await go_register(go, name=f"U{i}") for i in range(5)]
    gid = (await new_group(go, owner, [admin, member]))["group_id"]
    await make_admin(api, owner, gid, admin)

    status, body = await go.post(f"/groups/{gid}/members", token=member.token, json={"member_ids": [newcomer.id]})
    fails(status, body, 403, "forbidden")

    added = ok(
        *await go.post(f"/groups/{gid}/members", token=owner.token, json={"member_ids": [member.id, newcomer.id]}), 201
    )
    assert added["group_id"] == gid and [m["user_id"] for m in added["added_members"]] == [newcomer.id], added
    assert set(added["added_members"][0]) >= {"user_id", "name", "avatar_url"}
    group = await get_group(go, newcomer, gid)
    assert group["member_count"] == 4 and roles(group)[newcomer.id] == "member"

    again = ok(*await go.post(f"/groups/{gid}/members", token=admin.token, json={"member_ids": [newcomer.id]}), 201)
    assert again["added_members"] == []

    unknown = {"member_ids": [later.id, "000000000000000000000000"]}
    fails(*await go.post(f"/groups/{gid}/members", token=owner.token, json=unknown), 404, "not_found")
    assert later.id not in roles(await get_group(go, owner, gid))
    fails(*await go.get(f"/groups/{gid}", token=later.token), 404, "not_found")

    refused: list[dict[str, Any]] = [{"member_ids": []}, {}, {"member_ids": [1]}]
    for bad in refused:
        fails(*await go.post(f"/groups/{gid}/members", token=owner.token, json=bad), 422, "validation_failed")
    by_admin = ok(*await go.post(f"/groups/{gid}/members", token=admin.token, json={"member_ids": [later.id]}), 201)
    assert [m["user_id"] for m in by_admin["added_members"]] == [later.id]


async def test_removing_members(go: GoApi, api: Api) -> None:
    owner, admin, member, other = [await go_register(go) for _ in range(4)]
    gid = (await new_group(go, owner, [admin, member, other]))["group_id"]
    await make_admin(api, owner, gid, admin)

    fails(*await go.delete(f"/groups/{gid}/members/{other.id}", token=member.token), 403, "forbidden")
    fails(*await go.delete(f"/groups/{gid}/members/{owner.id}", token=admin.token), 403, "forbidden")
    fails(*await go.delete(f"/groups/{gid}/members/{owner.id}", token=member.token), 403, "forbidden")
    assert ok(*await go.delete(f"/groups/{gid}/members/{other.id}", token=admin.token)) is None
    ok(*await go.delete(f"/groups/{gid}/members/{member.id}", token=owner.token))
    fails(*await go.delete(f"/groups/{gid}/members/{member.id}", token=owner.token), 404, "not_found")

    group = await get_group(go, owner, gid)
    assert roles(group) == {owner.id: "owner", admin.id: "admin"} and group["member_count"] == 2
    fails(*await go.get(f"/groups/{gid}", token=other.token), 404, "not_found")
    fails(*await go.post(f"/chats/{gid}/messages", token=member.token, json={"content": "x"}), 404, "not_found")


async def test_owner_leaving_passes_ownership_to_an_admin(go: GoApi, api: Api) -> None:
    owner, first, admin = [await go_register(go) for _ in range(3)]
    gid = (await new_group(go, owner, [first, admin]))["group_id"]
    await make_admin(api, owner, gid, admin)
    assert ok(*await go.post(f"/groups/{gid}/leave", token=owner.token)) is None
    group = await get_group(go, admin, gid)
    assert group["owner_id"] == admin.id, group
    assert roles(group) == {admin.id: "owner", first.id: "member"}, group
    fails(*await go.get(f"/groups/{gid}", token=owner.token), 404, "not_found")
    fails(*await go.post(f"/groups/{gid}/leave", token=owner.token), 404, "not_found")
    ok(*await go.put(f"/groups/{gid}", token=admin.token, json={"name": "Mine now"}))


async def test_owner_leaving_without_admins_passes_ownership_to_the_longest_member(go: GoApi) -> None:
    owner, small_id, big_id = [await go_register(go) for _ in range(3)]
    # the member with the later id joins first, so an order by id would pick the wrong heir
    gid = (await new_group(go, owner, [big_id]))["group_id"]
    ok(*await go.post(f"/groups/{gid}/members", token=owner.token, json={"member_ids": [small_id.id]}), 201)
    ok(*await go.post(f"/groups/{gid}/leave", token=owner.token))
    group = await get_group(go, small_id, gid)
    assert group["owner_id"] == big_id.id, group
    assert roles(group) == {big_id.id: "owner", small_id.id: "member"}, group
    fails(*await go.delete(f"/groups/{gid}", token=small_id.token), 403, "forbidden")
    ok(*await go.delete(f"/groups/{gid}", token=big_id.token))


async def test_the_last_member_leaving_deletes_the_group(go: GoApi) -> None:
    owner, member = await go_register(go), await go_register(go)
    gid = (await new_group(go, owner, [member]))["group_id"]
    ok(*await go.post(f"/groups/{gid}/leave", token=member.token))
    assert roles(await get_group(go, owner, gid)) == {owner.id: "owner"}
    ok(*await go.post(f"/groups/{gid}/leave", token=owner.token))
    for user in (owner, member):
        fails(*await go.get(f"/groups/{gid}", token=user.token), 404, "not_found")
        assert ok(*await go.get("/chats", token=user.token))["pagination"]["total"] == 0
    fails(
        *await go.post(f"/groups/{gid}/members", token=owner.token, json={"member_ids": [member.id]}), 404, "not_found"
    )


# uploads --------------------------------------------------------------------------------------------------------------


async def test_upload_answers_the_file_and_serves_its_bytes(go: GoApi) -> None:
    user = await go_register(go)
    data = ok(*await go.post("/uploads", token=user.token, data=form(PNG, purpose="avatar")), code=201)
    assert set(data) == UPLOAD_KEYS, data
    assert data["filename"] == "pic.png" and data["size"] == len(PNG) and data["mime_type"] == "image/png"
    assert is_unix(data["created_at"]) and data["url"] == f"/api/uploads/{data['file_id']}"
    async with go.session.get(go.base + data["url"]) as response:
        assert response.status == 200
        assert await response.read() == PNG
        assert response.headers["Content-Type"] == "image/png"

    text = ok(*await go.post("/uploads", token=user.token, data=form(b"hello", "a.txt", "text/plain")), code=201)
    assert text["mime_type"] == "text/plain" and text["size"] == 5
    async with go.session.get(go.base + text["url"]) as response:
        assert response.status == 200 and await response.read() == b"hello"
        assert response.headers["Content-Type"].startswith("text/plain")
    group_picture = ok(*await go.post("/uploads", token=user.token, data=form(PNG, purpose="group")), code=201)
    assert group_picture["mime_type"] == "image/png"
    ok(*await go.put("/users/profile", token=user.token, json={"avatar_url": data["url"]}))

    fails(*await go.get("/uploads/000000000000000000000000"), 404, "not_found")


async def test_bad_uploads_are_refused(go: GoApi) -> None:
    user = await go_register(go)
    not_image = form(b"hello", "a.txt", "text/plain", purpose="avatar")
    assert (
        "file"
        in fails(*await go.post("/uploads", token=user.token, data=not_image), 422, "validation_failed")["details"]
    )
    group_text = form(b"hello", "a.txt", "text/plain", purpose="group")
    fails(*await go.post("/uploads", token=user.token, data=group_text), 422, "validation_failed")
    unknown = form(PNG, purpose="wallpaper")
    assert (
        "purpose"
        in fails(*await go.post("/uploads", token=user.token, data=unknown), 422, "validation_failed")["details"]
    )
    missing = form(None, purpose="message")
    assert (
        "file" in fails(*await go.post("/uploads", token=user.token, data=missing), 422, "validation_failed")["details"]
    )
    fails(*await go.post("/uploads", token=user.token, json={"file": "aGVsbG8="}), 400, "bad_request")
    fails(*await go.post("/uploads", data=form(PNG)), 401, "unauthorized")


async def test_an_upload_over_the_limit_is_413(config: Config) -> None:
    assert config.uploads.max_size == 10 * 1024 * 1024  # the contract's 10 MB, lowered below to test it cheaply
    async with running(config.replace(uploads={"max_size": 1000})) as (srv, v1):
        go = GoApi(v1.session, srv.url)
        user = await go_register(go)
        fails(
            *await go.post("/uploads", token=user.token, data=form(b"x" * 2000, "big.txt", "text/plain")),
            413,
            "payload_too_large",
        )
        small = ok(*await go.post("/uploads", token=user.token, data=form(b"x" * 1000, "ok.txt", "text/plain")), 201)
        assert small["size"] == 1000
