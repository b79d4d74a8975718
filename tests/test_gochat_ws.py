"""The Go Chat Web door's WebSocket `/ws`, frame by frame, through aiohttp's WebSocket client.

Covered, because a client written against the seed relies on each of them
(`/work/shared/gochat-protocol.md`, "The WebSocket /ws"):

- the upgrade: a token in `?token=` or an `Authorization: Bearer` header; a missing,
  bad, expired or revoked one is a 401 in the door's envelope before any socket
  exists; the first frame is `connected`;
- every client frame (`send_message`, `typing_*`, `user_status`, `mark_read`, `ping`)
  with and without `request_id`, and every way a frame can be wrong (bad JSON, not an
  object, unknown type, invalid data, binary, too large), after each of which the
  connection still answers;
- every server frame (`new_message`, `message_status`, `typing_*`, `user_status`,
  `message_edited`, `message_deleted`) and who gets it: every connection of every
  member, never non-members, never the typist's or the reader's own connections;
- logins ending (4001, only that login's connections), membership changes taking
  effect at once, and a client that stops reading being closed, not buffered for;
- the doors meeting in one process: `/ws` <-> Socket.IO, `/api` and `/api/v1` REST
  sends reaching `/ws` (the two-process version is `tests/test_gochat_cluster.py`).

Nothing asserts on timing. A frame that must NOT arrive is checked after a barrier:
a `ping` answered `pong` on the same connection (in one process every notifier call
is queued on each connection before the action that caused it answers, and a
connection's frames leave in order), or a later message that must arrive.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import jwt
import pytest

from handlers.gochat.hub import WsHub
from server.config import Config
from server.keys import HUB
from tests.chat_support import MESSAGE_EVENTS, MESSAGE_KEYS
from tests.conftest import Api, Server, Socket, register, start_server
from tests.gochat_support import (
    GO_MESSAGE_KEYS,
    GoApi,
    GoUser,
    WsClient,
    go_group,
    go_private,
    go_register,
    go_send,
    pong,
    wait_closed,
    ws_open,
)

GRACE = 0.2  # presence grace period: a user with no connection left is offline this long after
LIMIT = 64 * 1024
DELIVERY_ROUNDS = 50  # group messages whose delivery reports race each other


@pytest.fixture
def config(config: Config) -> Config:
    return config.replace(presence={"grace_period": GRACE})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as client:
        yield client


@pytest.fixture
def go(server: Server, session: aiohttp.ClientSession) -> GoApi:
    return GoApi(session, server.url)


@pytest.fixture
async def v1(server: Server, session: aiohttp.ClientSession) -> Api:
    return Api(session, server.api)


Opener = Callable[..., Awaitable[WsClient]]


@pytest.fixture
async def wss(server: Server, session: aiohttp.ClientSession) -> AsyncIterator[Opener]:
    """`await wss(token, header=False, compress=15)`: a `/ws` client, `connected` already; closed at the end."""
    opened: list[WsClient] = []

    async def open_(token: str, header: bool = False, compress: int = 15) -> WsClient:
        client = await ws_open(session, server.url, token, header=header, compress=compress)
        opened.append(client)
        return client

    yield open_
    for client in opened:
        await client.close()


async def frame_where(
    client: WsClient, kind: str, match: Callable[[dict[str, Any]], bool], timeout: float = 5.0
) -> dict[str, Any]:
    """The first `kind` frame's data that `match` accepts, waiting for it (bounded)."""

    async def find() -> dict[str, Any]:
        count = 1
        while True:
            frames = await client.wait_for(kind, count, timeout)
            for data in frames:
                if match(data):
                    return data
            count = len(frames) + 1

    return await asyncio.wait_for(find(), timeout)


def of_message(client: WsClient, kind: str, message_id: str) -> list[dict[str, Any]]:
    return [data for data in client.of(kind) if data.get("message_id") == message_id]


async def ws_send(client: WsClient, chat_id: str, content: str, **extra: Any) -> dict[str, Any]:
    """`send_message` with a `request_id`: the acked message."""
    answer = await client.request("send_message", {"chat_id": chat_id, "content": content, "type": "text", **extra})
    assert answer["type"] == "ack", answer
    data: dict[str, Any] = answer["data"]
    return data


async def go_login(go: GoApi, user: GoUser) -> str:
    """Another login of `user` through `/api`: its access token."""
    status, body = await go.post("/auth/login", json={"email": user.email, "password": user.password})
    assert status == 200, body
    return str(body["data"]["access_token"])


def upgrade_headers(**extra: str) -> dict[str, str]:
    key = base64.b64encode(os.urandom(16)).decode()
    return {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": key}


class Reports:
    """Every delivery report the hub made (its `reached`, wrapped), to wait for them without sleeping."""

    def __init__(self, hub: WsHub) -> None:
        self.done: list[tuple[str, str]] = []  # (recipient, message id), once `reached` returned
        self._changed = asyncio.Condition()
        original = hub.reached

        async def reached(user_id: str, chat_id: str, message_id: str, sender_id: str) -> Any:
            try:
                return await original(user_id, chat_id, message_id, sender_id)
            finally:
                async with self._changed:
                    self.done.append((user_id, message_id))
                    self._changed.notify_all()

        hub.reached = reached

    async def wait(self, message_id: str, count: int, timeout: float = 5.0) -> None:
        def enough() -> bool:
            return sum(1 for _, mid in self.done if mid == message_id) >= count

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(enough), timeout)


# connecting -----------------------------------------------------------------------------------------------------------


async def test_connect_with_a_query_token_starts_with_connected(go: GoApi, wss: Opener) -> None:
    alice = await go_register(go)
    before = int(time.time())
    client = await wss(alice.token)
    assert client.frames[0]["type"] == "connected", client.frames
    data = client.frames[0]["data"]
    assert set(data) == {"user_id", "timestamp"}
    assert data["user_id"] == alice.id
    assert isinstance(data["timestamp"], int) and data["timestamp"] >= before - 1
    await pong(client)


async def test_connect_with_a_bearer_header(go: GoApi, wss: Opener) -> None:
    alice = await go_register(go)
    client = await wss(alice.token, header=True)
    assert client.frames[0] == {"type": "connected", "data": client.frames[0]["data"]}
    assert client.frames[0]["data"]["user_id"] == alice.id
    await pong(client)


def _recraft(config: Config, token: str, **claims: Any) -> str:
    secret = (config.data_path / "jwt_secret").read_text(encoding="ascii").strip()
    payload = jwt.decode(token, secret, algorithms=["HS256"])
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")


@pytest.mark.parametrize("kind", ["missing", "garbage", "expired", "revoked", "refresh", "empty header"])
async def test_a_bad_token_is_refused_with_401_before_the_upgrade(
    kind: str, server: Server, go: GoApi, session: aiohttp.ClientSession, config: Config
) -> None:
    alice = await go_register(go)
    now = int(time.time())
    params: dict[str, str] = {}
    headers = upgrade_headers()
    if kind == "garbage":
        params["token"] = "not-a-jwt"
    elif kind == "expired":
        params["token"] = _recraft(config, alice.token, iat=now - 120, exp=now - 60)
    elif kind == "revoked":
        status, body = await go.post("/auth/logout", token=alice.token)
        assert status == 200, body
        params["token"] = alice.token
    elif kind == "refresh":
        params["token"] = alice.refresh_token
    elif kind == "empty header":
        headers["Authorization"] = "Bearer "
    async with session.get(f"{server.url}/ws", params=params, headers=headers) as response:
        assert response.status == 401
        assert "Sec-WebSocket-Accept" not in response.headers
        body = await response.json(content_type=None)
    assert body["code"] == 401 and isinstance(body["message"], str) and body["message"], body
    expected = "auth_token_expired" if kind == "expired" else "unauthorized"
    assert body["data"]["error"] == expected, body
    assert isinstance(body["timestamp"], int)
    # and aiohttp's client gets no socket
    url = f"{server.url}/ws" + (f"?token={params['token']}" if "token" in params else "")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(url)
    assert refused.value.status == 401


# send_message ---------------------------------------------------------------------------------------------------------


async def test_send_message_acks_and_reaches_every_connection_of_every_member(go: GoApi, wss: Opener) -> None:
    alice, bob, carol = await go_register(go, "Alice"), await go_register(go), await go_register(go)
    chat = await go_private(go, alice, bob.id)
    carols = await go_private(go, carol, alice.id)  # carol is no member of `chat`
    alice1, alice2, bob1, carol1 = (
        await wss(alice.token),
        await wss(alice.token),
        await wss(bob.token),
        await wss(carol.token),
    )

    before = int(time.time())
    answer = await alice1.request("send_message", {"chat_id": chat, "content": "hello", "type": "text"})
    assert answer["type"] == "ack" and answer["request_id"], answer
    sent = answer["data"]
    assert set(sent) >= GO_MESSAGE_KEYS, sent
    assert (sent["chat_id"], sent["sender_id"], sent["sender_name"], sent["content"]) == (
        chat,
        alice.id,
        "Alice",
        "hello",
    )
    assert (sent["type"], sent["status"], sent["reply_to"], sent["edited_at"]) == ("text", "sent", None, None)
    assert isinstance(sent["created_at"], int) and sent["created_at"] >= before - 1

    for client in (alice1, alice2, bob1):  # the sender's own connections too
        (received,) = await client.wait_for("new_message")
        assert received == sent
    marker = await go_send(go, alice, carols, "marker")
    (only,) = await carol1.wait_for("new_message")
    assert only["message_id"] == marker["message_id"], "carol is not a member of the first chat"


async def test_a_repeated_client_id_answers_the_first_message_and_sends_nothing(go: GoApi, wss: Opener) -> None:
    alice, bob = await go_register(go), await go_register(go)
    chat = await go_private(go, alice, bob.id)
    alice1, bob1 = await wss(alice.token), await wss(bob.token)
    first = await ws_send(alice1, chat, "once", client_id="c-1")
    again = await ws_send(alice1, chat, "once more", client_id="c-1")
    assert again["message_id"] == first["message_id"] and again["content"] == "once"
    later = await ws_send(alice1, chat, "later")  # the barrier
    for client in (bob1, alice1):
        received = await frame_where(client, "new_message", lambda m: m["message_id"] == later["message_id"])
        assert received["content"] == "later"
        assert [m["message_id"] for m in client.of("new_message")] == [first["message_id"], later["message_id"]]
    status, body = await go.get(f"/chats/{chat}/messages", token=bob.token)
    assert status == 200 and [m["content"] for m in body["data"]["messages"]] == ["later", "once"], body


async def test_reply_to_a_message_of_another_chat_is_422(go: GoApi, wss: Opener) -> None:
    alice, bob, carol = await go_register(go), await go_register(go), await go_register(go)
    chat, other = await go_private(go, alice, bob.id), await go_private(go, alice, carol.id)
    elsewhere = await go_send(go, alice, other, "elsewhere")
    alice1, bob1 = await wss(alice.token), await wss(bob.token)
    answer = await alice1.request(
        "send_message", {"chat_id": chat, "content": "re", "reply_to": elsewhere["message_id"]}
    )
    assert answer["type"] == "error", answer
    assert answer["data"]["code"] == 422 and answer["data"]["error"] == "validation_failed", answer
    assert "reply_to" in answer["data"].get("details", {}), answer
    # a reply within the chat is fine, and it is the only message bob gets
    own = await go_send(go, alice, chat, "original")
    reply = await ws_send(alice1, chat, "re", reply_to=own["message_id"])
    assert reply["reply_to"] == own["message_id"]
    received = await bob1.wait_for("new_message", 2)
    assert [m["message_id"] for m in received] == [own["message_id"], reply["message_id"]]


async def test_sending_to_a_chat_you_are_not_in_is_404(go: GoApi, wss: Opener) -> None:
    alice, bob, carol = await go_register(go), await go_register(go), await go_register(go)
    chat = await go_private(go, alice, bob.id)
    carol1, bob1 = await wss(carol.token), await wss(bob.token)
    answer = await carol1.request("send_message", {"chat_id": chat, "content": "let me in"})
    assert answer["type"] == "error", answer
    assert answer["data"]["code"] == 404 and answer["data"]["error"] == "not_found", answer
    answer = await carol1.request("send_message", {"chat_id": "no-such-chat", "content": "hello?"})
    assert answer["data"]["code"] == 404, answer
    await pong(bob1)
    assert bob1.of("new_message") == []
    status, body = await go.get(f"/chats/{chat}/messages", token=alice.token)
    assert status == 200 and body["data"]["messages"] == [], body


async def test_frames_without_request_id_get_no_ack_but_failures_get_an_error(go: GoApi, wss: Opener) -> None:
    alice, bob = await go_register(go), await go_register(go)
    chat = await go_private(go, alice, bob.id)
    alice1 = await wss(alice.token)
    await alice1.ws.send_json({"type": "send_message", "data": {"chat_id": chat, "content": "quiet"}})
    (message,) = await alice1.wait_for("new_message")  # it was sent
    await alice1.ws.send_json({"type": "send_message", "data": {"chat_id": "no-such-chat", "content": "x"}})
    (error,) = await alice1.wait_for("error")
    assert error["code"] == 404 and error["error"] == "not_found" and error["message"], error
    await pong(alice1)
    assert alice1.of("ack") == [], "no request_id, no ack"
    assert all("request_id" not in f for f in alice1.frames if f["type"] in ("error", "new_message"))
    assert message["content"] == "quiet"


# message_status -------------------------------------------------------------------------------------------------------


async def test_delivered_once_when_a_message_reaches_a_recipient_connection(
    server: Server, go: GoApi, wss: Opener
) -> None:
    reports = Reports(server.app[HUB])
    alice, bob = await go_register(go), await go_register(go)
    chat = await go_private(go, alice, bob.id)
    alice1, bob1, bob2 = await wss(alice.token), await wss(bob.token), await wss(bob.token)
    sent = await ws_send(alice1, chat, "are you there?")
    for client in (bob1, bob2):
        await client.wait_for("new_message")
        await pong(client)  # the frame's write, and the report it starts, are done
    await reports.wait(sent["message_id"], 2)  # both of bob's connections reported it
    status = await frame_where(alice1, "message_status", lambda s: s["message_id"] == sent["message_id"])
    assert set(status) == {"message_id", "chat_id", "status", "timestamp"}, status
    assert (status["chat_id"], status["status"]) == (chat, "delivered")
    assert isinstance(status["timestamp"], int)
    await pong(alice1)
    assert len(of_message(alice1, "message_status", sent["message_id"])) == 1, alice1.of("message_status")
    for client in (bob1, bob2):  # the recipient is not told its own delivery
        assert client.of("message_status") == []
    status_code, body = await go.get(f"/chats/{chat}/messages", token=alice.token)
    assert status_code == 200 and body["data"]["messages"][0]["status"] == "delivered", body


async def test_a_group_message_is_delivered_once_however_many_recipients_get_it(
    server: Server, go: GoApi, wss: Opener
) -> None:
    reports = Reports(server.app[HUB])
    owner = await go_register(go)
    members = [await go_register(go) for _ in range(3)]
    group = await go_group(go, owner, [m.id for m in members])
    sender = await wss(owner.token)
    recipients = [await wss(m.token) for m in members]
    counts: dict[str, int] = {}
    for round_ in range(DELIVERY_ROUNDS):  # the three reports of a message race: some rounds would show it
        sent = await ws_send(sender, group, f"hello all {round_}")
        mid = sent["message_id"]
        for client in recipients:
            await frame_where(client, "new_message", lambda m, mid=mid: m["message_id"] == mid)
            await pong(client)  # its write, and the report that write starts, are done
        await reports.wait(mid, 3)
        await pong(sender)  # every status queued for the sender by then has arrived
        statuses = of_message(sender, "message_status", mid)
        assert {s["status"] for s in statuses} <= {"delivered"}, statuses
        counts[mid] = len(statuses)
    wrong = {mid: n for mid, n in counts.items() if n != 1}
    assert not wrong, f"{len(wrong)} of {len(counts)} messages told `delivered` other than once: {wrong}"


async def test_history_reads_do_not_count_as_delivered(server: Server, go: GoApi, wss: Opener) -> None:
    reports = Reports(server.app[HUB])
    alice, bob = await go_register(go), await go_register(go)
    chat = await go_private(go, alice, bob.id)
    alice1 = await wss(alice.token)
    unseen = await ws_send(alice1, chat, "while you were away")
    status, body = await go.get(f"/chats/{chat}/messages", token=bob.token)
    assert status == 200 and body["data"]["messages"][0]["message_id"] == unseen["message_id"], body
    bob1 = await wss(bob.token)
    seen = await ws_send(alice1, chat, "now you are here")
    await bob1.wait_for("new_message")
    await pong(bob1)
    await reports.wait(seen["message_id"], 1)
    await frame_where(alice1, "message_status", lambda s: s["message_id"] == seen["message_id"])
    assert of_message(alice1, "message_status", unseen["message_id"]) == []


@pytest.mark.parametrize("how", ["frame", "rest"])
async def test_read_is_told_to_the_sender_and_shown_in_history(how: str, go: GoApi, wss: Opener) -> None:
    alice, bob = await go_register(go), await go_register(go)
    chat = await go_private(go, alice, bob.id)
    alice1, bob1, bob2 = await wss(alice.token), await wss(bob.token), await wss(bob.token)
    first = await ws_send(alice1, chat, "one")
    sent = await ws_send(alice1, chat, "two")
    await bob1.wait_for("new_message", 2)
    if how == "frame":
        answer = await bob1.request("mark_read", {"chat_id": chat, "message_id": sent["message_id"]})
        assert answer["type"] == "ack", answer
        read = answer["data"]
    else:
        status, body = await go.put(
            f"/chats/{chat}/mark-read", token=bob.token, json={"message_id": sent["message_id"]}
        )
        assert status == 200, body
        read = body["data"]
    assert (read["chat_id"], read["message_id"], read["unread_count"]) == (chat, sent["message_id"], 0), read
    status_frame = await frame_where(alice1, "message_status", lambda s: s["status"] == "read")
    assert (status_frame["message_id"], status_frame["chat_id"]) == (sent["message_id"], chat)
    assert isinstance(status_frame["timestamp"], int)
    for client in (bob1, bob2):  # the reader's own connections are not told they read
        await pong(client)
        assert [s for s in client.of("message_status") if s["status"] == "read"] == []
    status, body = await go.get(f"/chats/{chat}/messages", token=alice.token)
    assert status == 200, body
    assert {m["message_id"]: m["status"] for m in body["data"]["messages"]} == {
        first["message_id"]: "read",
        sent["message_id"]: "read",
    }


# typing ---------------------------------------------------------------------------------------------------------------


async def test_typing_reaches_the_other_members_only(go: GoApi, wss: Opener) -> None:
    alice, bob, carol = await go_register(go, "Alice Typist"), await go_register(go), await go_register(go)
    group = await go_group(go, alice, [bob.id, carol.id])
    alice1, alice2 = await wss(alice.token), await wss(alice.token)
    bob1, carol1 = await wss(bob.token), await wss(carol.token)
    for kind in ("typing_start", "typing_stop"):
        answer = await alice1.request(kind, {"chat_id": group})
        assert answer["type"] == "ack" and answer["data"] == {"chat_id": group}, answer
        for client in (bob1, carol1):
            (notice,) = await client.wait_for(kind)
            assert notice == {"chat_id": group, "user_id": alice.id, "user_name": "Alice Typist"}
        for client in (alice1, alice2):
            await pong(client)
            assert client.of(kind) == [], f"the typist's own connection got {kind}"
    stranger = await go_register(go)
    stranger1 = await wss(stranger.token)
    answer = await stranger1.request("typing_start", {"chat_id": group})
    assert answer["type"] == "error" and answer["data"]["code"] == 404, answer


# user_status ----------------------------------------------------------------------------------------------------------


async def test_user_status_reaches_the_users_who_share_a_chat(go: GoApi, wss: Opener) -> None:
    alice, bob, carol = await go_register(go), await go_register(go), await go_register(go)
    await go_private(go, alice, bob.id)
    bob1, carol1 = await wss(bob.token), await wss(carol.token)  # carol shares no chat with alice

    def alices() -> list[dict[str, Any]]:
        return [s for s in bob1.of("user_status") if s["user_id"] == alice.id]

    seen = 0  # the changes of alice's looked at so far

    async def next_status(status: str) -> dict[str, Any]:
        nonlocal seen
        await frame_where(bob1, "user_status", lambda _: len(alices()) > seen)
        change = alices()[seen]
        seen += 1
        assert set(change) == {"user_id", "status", "last_seen"}, change
        assert change["status"] == status, alices()
        return change

    alice1 = await wss(alice.token)
    await next_status("online")

    answer = await alice1.request("user_status", {"status": "dnd"})
    assert answer["type"] == "ack" and answer["data"]["status"] == "dnd", answer
    await next_status("dnd")

    status, body = await go.put("/users/status", token=alice.token, json={"status": "away"})
    assert status == 200 and body["data"]["status"] == "away", body
    await next_status("away")

    answer = await alice1.request("user_status", {"status": "offline"})  # appear offline while connected
    assert answer["type"] == "ack" and answer["data"]["status"] == "offline", answer
    await next_status("offline")
    status, body = await go.get(f"/users/{alice.id}", token=bob.token)
    assert status == 200 and body["data"]["status"] == "offline", body

    answer = await alice1.request("user_status", {"status": "online"})
    assert answer["type"] == "ack", answer
    await next_status("online")

    await alice1.close()
    gone = await next_status("offline")  # after the grace period
    assert isinstance(gone["last_seen"], int)
    await pong(carol1)
    assert [s for s in carol1.of("user_status") if s["user_id"] == alice.id] == []
    assert [s["status"] for s in alices()] == ["online", "dnd", "away", "offline", "online", "offline"]


async def test_an_invalid_status_is_422(go: GoApi, wss: Opener) -> None:
    alice = await go_register(go)
    alice1 = await wss(alice.token)
    for status in ("busy", "invisible", "sleeping", ""):
        answer = await alice1.request("user_status", {"status": status})
        assert answer["type"] == "error" and answer["data"]["code"] == 422, answer
        assert "status" in answer["data"]["details"], answer


# message_edited / message_deleted -------------------------------------------------------------------------------------


async def test_edits_and_deletes_through_rest_reach_every_member(go: GoApi, wss: Opener) -> None:
    alice, bob = await go_register(go), await go_register(go)
    chat = await go_private(go, alice, bob.id)
    alice1, bob1 = await wss(alice.token), await wss(bob.token)
    sent = await ws_send(alice1, chat, "tpyo")
    mid = sent["message_id"]

    status, body = await go.put(f"/messages/{mid}", token=alice.token, json={"content": "typo"})
    assert status == 200, body
    edit = body["data"]
    assert (edit["message_id"], edit["content"], edit["status"]) == (mid, "typo", "edited")
    for client in (alice1, bob1):
        (edited,) = await client.wait_for("message_edited")
        assert edited == {"message_id": mid, "chat_id": chat, "content": "typo", "edited_at": edit["edited_at"]}
    status, body = await go.put(f"/messages/{mid}", token=bob.token, json={"content": "mine now"})
    assert status == 403, body

    status, body = await go.delete(f"/messages/{mid}", token=alice.token)
    assert status == 200, body
    for client in (alice1, bob1):
        (deleted,) = await client.wait_for("message_deleted")
        assert set(deleted) == {"message_id", "chat_id", "deleted_at"}
        assert (deleted["message_id"], deleted["chat_id"]) == (mid, chat)
        assert isinstance(deleted["deleted_at"], int)
    await pong(bob1)
    assert len(bob1.of("message_edited")) == 1, "a refused edit sends nothing"
    status, body = await go.get(f"/chats/{chat}/messages", token=bob.token)
    assert status == 200 and body["data"]["messages"] == [], body


# ping, and frames that are wrong --------------------------------------------------------------------------------------


async def test_ping_is_answered_pong(go: GoApi, wss: Opener) -> None:
    alice = await go_register(go)
    alice1 = await wss(alice.token)
    answer = await alice1.request("ping")
    assert answer == {"type": "pong", "request_id": answer["request_id"]} and answer["request_id"], answer
    await alice1.ws.send_json({"type": "ping", "request_id": 7})
    await alice1.ws.send_json({"type": "ping"})
    await pong(alice1)  # after the two above
    pongs = [f for f in alice1.frames if f["type"] == "pong"]
    assert pongs[1:3] == [{"type": "pong", "request_id": 7}, {"type": "pong"}], pongs


BAD_FRAMES: dict[str, tuple[str | bytes, int, str, str | None]] = {
    # name: (what is sent, code, error, the request_id the error frame carries)
    "malformed JSON": ('{"type": "ping", ', 400, "bad_request", None),
    "a JSON array": ('[{"type": "ping"}]', 400, "bad_request", None),
    "a JSON string": ('"ping"', 400, "bad_request", None),
    "a JSON number": ("42", 400, "bad_request", None),
    "an unknown type": ('{"type": "dance", "request_id": "u1"}', 422, "validation_failed", "u1"),
    "no type": ('{"data": {}, "request_id": "u2"}', 422, "validation_failed", "u2"),
    "a type that is not a string": ('{"type": 3, "request_id": "u3"}', 422, "validation_failed", "u3"),
    "send_message without chat_id": (
        '{"type": "send_message", "request_id": "d1", "data": {"content": "hi"}}',
        422,
        "validation_failed",
        "d1",
    ),
    "send_message with empty content": (
        '{"type": "send_message", "request_id": "d2", "data": {"chat_id": "x", "content": "  "}}',
        422,
        "validation_failed",
        "d2",
    ),
    "data that is not an object": (
        '{"type": "typing_start", "request_id": "d3", "data": [1]}',
        422,
        "validation_failed",
        "d3",
    ),
    "a chat_id that is not a string": (
        '{"type": "typing_stop", "request_id": "d4", "data": {"chat_id": 5}}',
        422,
        "validation_failed",
        "d4",
    ),
    "a request_id that is an object": ('{"type": "ping", "request_id": {"a": 1}}', 422, "validation_failed", None),
    "a binary frame": (b'{"type": "ping"}', 400, "bad_request", None),
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
async def test_a_bad_frame_gets_an_error_and_the_connection_stays_usable(name: str, go: GoApi, wss: Opener) -> None:
    sent, code, error, request_id = BAD_FRAMES[name]
    alice = await go_register(go)
    alice1 = await wss(alice.token)
    if isinstance(sent, bytes):
        await alice1.ws.send_bytes(sent)
    else:
        await alice1.ws.send_str(sent)
    (answer,) = await alice1.wait_for("error")
    assert set(answer) <= {"code", "error", "message", "details"}, answer
    assert (answer["code"], answer["error"]) == (code, error), answer
    assert isinstance(answer["message"], str) and answer["message"]
    (frame,) = [f for f in alice1.frames if f["type"] == "error"]
    assert frame.get("request_id") == request_id, frame
    await pong(alice1)  # still open, still answering
    assert not alice1.closed.is_set()


def _padded_frame(size: int, fill: str = "a") -> str:
    """A `send_message` frame of exactly `size` UTF-8 bytes whose content is too long (so: 422)."""
    head, tail = '{"type":"send_message","request_id":"big","data":{"chat_id":"x","content":"', '"}}'
    room = size - len(head) - len(tail)
    width = len(fill.encode())
    frame = head + fill * (room // width) + "a" * (room % width) + tail
    assert len(frame.encode()) == size
    return frame


@pytest.mark.parametrize("fill", ["a", "\u00e9"])
@pytest.mark.parametrize("size", [LIMIT - 1, LIMIT])
@pytest.mark.parametrize("compress", [0, 15])
async def test_a_frame_up_to_64_kib_is_read(size: int, compress: int, fill: str, go: GoApi, wss: Opener) -> None:
    """Exactly 64 KiB is not over the limit, with or without permessage-deflate, counted in bytes."""
    alice = await go_register(go)
    alice1 = await wss(alice.token, compress=compress)
    await alice1.ws.send_str(_padded_frame(size, fill))
    (answer,) = await alice1.wait_for("error")
    assert answer["code"] == 422 and "content" in answer["details"], answer
    await pong(alice1)


@pytest.mark.parametrize("fill", ["a", "\u00e9"])
@pytest.mark.parametrize("size", [LIMIT + 1, 4 * LIMIT])
@pytest.mark.parametrize("compress", [0, 15])
async def test_a_frame_over_64_kib_closes_the_connection_with_1009(
    size: int, compress: int, fill: str, go: GoApi, wss: Opener
) -> None:
    """With permessage-deflate the frame on the wire is tiny: the limit is on the message as received, in bytes
    (a frame of two-byte characters is over it with half as many characters)."""
    alice = await go_register(go)
    alice1 = await wss(alice.token, compress=compress)
    await alice1.ws.send_str(_padded_frame(size, fill))
    assert await wait_closed(alice1) == 1009
    assert alice1.of("error") == []


# logins ending --------------------------------------------------------------------------------------------------------


async def test_logout_through_api_closes_that_logins_connections_with_4001(
    server: Server, go: GoApi, wss: Opener, session: aiohttp.ClientSession
) -> None:
    alice = await go_register(go)
    other_login = await go_login(go, alice)
    ended1, ended2, kept = await wss(alice.token), await wss(alice.token, header=True), await wss(other_login)
    status, body = await go.post("/auth/logout", token=alice.token)
    assert status == 200, body
    assert await wait_closed(ended1) == 4001
    assert await wait_closed(ended2) == 4001
    await pong(kept)
    assert not kept.closed.is_set()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(f"{server.url}/ws?token={alice.token}")
    assert refused.value.status == 401


async def test_logout_through_api_v1_closes_that_logins_ws_connections_with_4001(v1: Api, wss: Opener) -> None:
    dave = await register(v1)
    status, body = await v1.post("/auth/login", json={"email": dave.email, "password": dave.password})
    assert status == 200, body
    ended, kept = await wss(dave.token), await wss(body["data"]["token"])
    assert ended.frames[0]["data"]["user_id"] == dave.id
    status, body = await v1.post("/auth/logout", token=dave.token)
    assert status == 200, body
    assert await wait_closed(ended) == 4001
    await pong(kept)
    assert not kept.closed.is_set()


# membership -----------------------------------------------------------------------------------------------------------


async def test_a_member_removed_through_api_v1_stops_receiving_at_once(v1: Api, wss: Opener) -> None:
    alice, bob = await register(v1), await register(v1)
    status, body = await v1.post("/groups", token=alice.token, json={"name": "crew", "participants": [bob.id]})
    assert status == 201, body
    group = body["data"]["id"]
    status, body = await v1.post("/chats", token=alice.token, json={"type": "private", "participants": [bob.id]})
    assert status == 201, body
    side = body["data"]["id"]
    bob1 = await wss(bob.token)

    async def send(chat_id: str, content: str) -> str:
        status, body = await v1.post("/messages", token=alice.token, json={"chatId": chat_id, "content": content})
        assert status == 201, body
        return str(body["data"]["id"])

    first = await send(group, "while bob is in")
    await frame_where(bob1, "new_message", lambda m: m["message_id"] == first)
    status, body = await v1.delete(f"/groups/{group}/participants/{bob.id}", token=alice.token)
    assert status == 200, body
    after = await send(group, "bob is gone")
    marker = await send(side, "marker")  # the barrier
    await frame_where(bob1, "new_message", lambda m: m["message_id"] == marker)
    assert [m["message_id"] for m in bob1.of("new_message")] == [first, marker], f"{after} must not reach bob"

    status, body = await v1.post(f"/groups/{group}/participants", token=alice.token, json={"userIds": [bob.id]})
    assert status in (200, 201), body
    back = await send(group, "welcome back")
    await frame_where(bob1, "new_message", lambda m: m["message_id"] == back)


async def test_a_member_removed_through_api_stops_and_one_added_starts_receiving(go: GoApi, wss: Opener) -> None:
    alice, bob, carol = await go_register(go), await go_register(go), await go_register(go)
    group = await go_group(go, alice, [bob.id])
    side_bob = await go_private(go, alice, bob.id)
    alice1, bob1, carol1 = await wss(alice.token), await wss(bob.token), await wss(carol.token)

    status, body = await go.post(f"/groups/{group}/members", token=alice.token, json={"member_ids": [carol.id]})
    assert status == 201 and [m["user_id"] for m in body["data"]["added_members"]] == [carol.id], body
    both = await ws_send(alice1, group, "hello both")
    for client in (bob1, carol1):
        await frame_where(client, "new_message", lambda m: m["message_id"] == both["message_id"])

    status, body = await go.delete(f"/groups/{group}/members/{bob.id}", token=alice.token)
    assert status == 200, body
    after = await ws_send(alice1, group, "carol only")
    await frame_where(carol1, "new_message", lambda m: m["message_id"] == after["message_id"])
    marker = await ws_send(alice1, side_bob, "marker")  # the barrier for bob
    await frame_where(bob1, "new_message", lambda m: m["message_id"] == marker["message_id"])
    assert after["message_id"] not in [m["message_id"] for m in bob1.of("new_message")]
    answer = await bob1.request("send_message", {"chat_id": group, "content": "still here?"})
    assert answer["type"] == "error" and answer["data"]["code"] == 404, answer


# a client that stops reading ------------------------------------------------------------------------------------------


class SlowReader:
    """A `/ws` client over a raw TCP socket with a tiny receive buffer: it upgrades, then reads nothing until told."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, server: Server, token: str) -> SlowReader:
        host, port = server.url.removeprefix("http://").split(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /ws?token={token} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def frame(self) -> tuple[int, bytes]:
        """The next frame from the server (unmasked, unfragmented): its opcode and payload."""
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(length)

    async def close(self, code: int) -> None:
        mask = os.urandom(4)
        payload = struct.pack("!H", code)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        with contextlib.suppress(ConnectionError):
            self.writer.write(bytes([0x88, 0x80 | len(payload)]) + mask + masked)
            await self.writer.drain()
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
def slow_config(config: Config) -> Config:
    return config.replace(
        limits={"max_queue": 5, "ephemeral_queue": 2, "messages_per_second": 100000, "messages_burst": 100000}
    )


@pytest.fixture
async def slow_server(slow_config: Config) -> AsyncIterator[Server]:
    srv = await start_server(slow_config)
    yield srv
    await srv.runner.cleanup()


async def test_a_slow_reader_is_closed_with_1013(slow_server: Server) -> None:
    """The server's queue for a client that stops reading stays bounded: past `limits.max_queue` the connection is
    closed (1013, try again later), and what the client finds when it reads again ends with that close, well
    short of everything sent; it reconnects and reads the rest over REST."""
    hub = slow_server.app[HUB]
    async with aiohttp.ClientSession() as session:
        go = GoApi(session, slow_server.url)
        slow, bob = await go_register(go), await go_register(go)
        chat = await go_private(go, bob, slow.id)
        raw = await SlowReader.connect(slow_server, slow.token)
        try:
            opcode, payload = await asyncio.wait_for(raw.frame(), 5)
            assert opcode == 1 and json.loads(payload)["type"] == "connected"
            (conn,) = hub.users[slow.id]
            sent, content = 0, "x" * 9000
            while not conn.closing:  # bob sends over REST: the slow reader is the only /ws connection
                assert sent < 2000, "the slow reader was never closed"
                await go_send(go, bob, chat, f"{sent} {content}")
                sent += 1
                assert conn.queue.qsize() <= 5
            read, code = 0, None
            while code is None:  # now read: what was in flight, then the close
                opcode, payload = await asyncio.wait_for(raw.frame(), 10)
                if opcode == 8:
                    (code,) = struct.unpack("!H", payload[:2])
                elif opcode == 1 and json.loads(payload)["type"] == "new_message":
                    read += 1
            print(f"\nslow /ws reader: {sent} sent, {read} read before the close")
            assert code == 1013
            assert read < sent
        finally:
            await raw.close(1000)


# the doors meet (one process) -----------------------------------------------------------------------------------------


async def sio_connect(sockets: Callable[..., Any], token: str) -> Socket:
    """A Socket.IO client on `/messages` recording every chat event, once authenticated."""
    client: Socket = await sockets(token=token, namespace="/messages", events=MESSAGE_EVENTS)
    await client.seen.wait_for("authenticated")
    return client


async def test_a_ws_send_reaches_socketio_in_its_own_shape(go: GoApi, wss: Opener, sockets: Callable[..., Any]) -> None:
    alice, bob = await go_register(go, "Alice"), await go_register(go, "Bob")
    chat = await go_private(go, alice, bob.id)
    alice1, bob_ws = await wss(alice.token), await wss(bob.token)
    bob_sio = await sio_connect(sockets, bob.token)
    sent = await ws_send(alice1, chat, "from /ws")
    (pushed,) = await bob_sio.seen.wait_for("new_message")
    assert set(pushed) == MESSAGE_KEYS, pushed
    assert (pushed["id"], pushed["chatId"], pushed["senderId"], pushed["content"]) == (
        sent["message_id"],
        chat,
        alice.id,
        "from /ws",
    )
    (framed,) = await bob_ws.wait_for("new_message")
    assert framed == sent


async def test_a_socketio_send_reaches_ws_in_its_own_shape(go: GoApi, wss: Opener, sockets: Callable[..., Any]) -> None:
    alice, bob = await go_register(go, "Alice"), await go_register(go, "Bob")
    chat = await go_private(go, alice, bob.id)
    alice1 = await wss(alice.token)
    bob_sio = await sio_connect(sockets, bob.token)
    answer = await bob_sio.call("send_message", {"chatId": chat, "content": "from Socket.IO"})
    assert answer["success"] is True, answer
    (framed,) = await alice1.wait_for("new_message")
    assert set(framed) >= GO_MESSAGE_KEYS, framed
    assert (framed["message_id"], framed["chat_id"], framed["sender_id"], framed["sender_name"]) == (
        answer["data"]["id"],
        chat,
        bob.id,
        "Bob",
    )
    assert framed["content"] == "from Socket.IO" and isinstance(framed["created_at"], int)


async def test_an_api_rest_send_reaches_ws_and_socketio(go: GoApi, wss: Opener, sockets: Callable[..., Any]) -> None:
    alice, bob = await go_register(go), await go_register(go)
    chat = await go_private(go, alice, bob.id)
    alice1, bob_ws = await wss(alice.token), await wss(bob.token)
    bob_sio = await sio_connect(sockets, bob.token)
    sent = await go_send(go, alice, chat, "from /api")
    for client in (alice1, bob_ws):  # the sender's own /ws connection too
        (framed,) = await client.wait_for("new_message")
        assert framed == sent
    (pushed,) = await bob_sio.seen.wait_for("new_message")
    assert (pushed["id"], pushed["content"]) == (sent["message_id"], "from /api")


async def test_an_api_v1_rest_send_reaches_ws(v1: Api, go: GoApi, wss: Opener) -> None:
    alice, bob = await register(v1), await go_register(go)
    status, body = await v1.post("/chats", token=alice.token, json={"type": "private", "participants": [bob.id]})
    assert status == 201, body
    chat = body["data"]["id"]
    alice1, bob1 = await wss(alice.token), await wss(bob.token)
    status, body = await v1.post("/messages", token=alice.token, json={"chatId": chat, "content": "from /api/v1"})
    assert status == 201, body
    for client in (alice1, bob1):
        (framed,) = await client.wait_for("new_message")
        assert (framed["message_id"], framed["chat_id"], framed["sender_id"]) == (body["data"]["id"], chat, alice.id)
        assert framed["content"] == "from /api/v1"


async def test_receipts_and_typing_from_socketio_reach_ws(go: GoApi, wss: Opener, sockets: Callable[..., Any]) -> None:
    alice, bob = await go_register(go), await go_register(go, "Bob Typist")
    chat = await go_private(go, alice, bob.id)
    alice1 = await wss(alice.token)
    bob_sio = await sio_connect(sockets, bob.token)
    sent = await ws_send(alice1, chat, "tell me when you have it")
    await bob_sio.seen.wait_for("new_message")
    answer = await bob_sio.call("message_delivered", {"messageId": sent["message_id"]})
    assert answer["success"] is True, answer
    delivered = await frame_where(alice1, "message_status", lambda s: s["status"] == "delivered")
    assert (delivered["message_id"], delivered["chat_id"]) == (sent["message_id"], chat)
    answer = await bob_sio.call("mark_read", {"chatId": chat, "messageId": sent["message_id"]})
    assert answer["success"] is True, answer
    read = await frame_where(alice1, "message_status", lambda s: s["status"] == "read")
    assert read["message_id"] == sent["message_id"]
    answer = await bob_sio.call("typing_start", {"chatId": chat})
    assert answer["success"] is True, answer
    (typing,) = await alice1.wait_for("typing_start")
    assert typing == {"chat_id": chat, "user_id": bob.id, "user_name": "Bob Typist"}


async def test_a_socketio_connection_counts_as_online_for_ws(
    go: GoApi, wss: Opener, sockets: Callable[..., Any]
) -> None:
    alice, bob = await go_register(go), await go_register(go)
    await go_private(go, alice, bob.id)
    alice1 = await wss(alice.token)
    bob_sio = await sio_connect(sockets, bob.token)
    online = await frame_where(alice1, "user_status", lambda s: s["user_id"] == bob.id)
    assert online["status"] == "online"
    await bob_sio.client.disconnect()
    offline = await frame_where(alice1, "user_status", lambda s: s["user_id"] == bob.id and s["status"] != "online")
    assert offline["status"] == "offline" and isinstance(offline["last_seen"], int)
