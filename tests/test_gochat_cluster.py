"""The Go Chat Web door's `/ws` across two server processes sharing one redis-server.

Every notifier call reaches the `/ws` connections of every process through the Redis
channel, in the one order the Socket.IO sockets get it (`handlers.sio.notifier`). This
module starts a real `redis-server` and two `python -m server serve` processes, A and B
(one SQLite folder, one JWT secret; `tests/cluster_support.py`), and checks what a
single process cannot show:

- a message sent through any door on either process (`/ws`, Socket.IO, `/api`,
  `/api/v1`) reaches a `/ws` client on A, and a Socket.IO client and a `/ws` client on
  B, once each and in order;
- receipts, typing and presence cross processes to `/ws`;
- a member removed through `/api/v1` on A stops receiving on `/ws` on B at once (a
  later message in another chat, which must arrive, is the barrier), and one added
  starts;
- a logout on A closes that login's `/ws` connections on B with 4001, and only those.

Every wait is bounded; nothing asserts on speed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import socketio

from tests.chat_support import MESSAGE_EVENTS, MESSAGE_KEYS
from tests.cluster_support import Cluster, two_processes
from tests.conftest import SERVER_EVENTS, Api, Recorder, Socket, recorder_for, register
from tests.gochat_support import (
    GoApi,
    GoUser,
    WsClient,
    go_private,
    go_register,
    go_send,
    pong,
    wait_closed,
    ws_open,
)

pytestmark = pytest.mark.redis  # starts a redis-server: `make check` leaves this module out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from two_processes(tmp_path_factory.mktemp("gochat-cluster"))


@dataclass
class Side:
    """The doors of one process: `/api`, `/api/v1`, `/ws` and Socket.IO."""

    name: str
    url: str
    session: aiohttp.ClientSession
    go: GoApi
    v1: Api
    opened: list[WsClient] = field(default_factory=list)
    sockets: list[socketio.AsyncClient] = field(default_factory=list)

    async def ws(self, token: str) -> WsClient:
        client = await ws_open(self.session, self.url, token)
        self.opened.append(client)
        return client

    async def sio(self, token: str, namespace: str = "/messages") -> Socket:
        """A Socket.IO client recording every chat event, once authenticated (its rooms are joined by then)."""
        client = socketio.AsyncClient(reconnection=False)
        seen = Recorder()
        for name in (*SERVER_EVENTS, *MESSAGE_EVENTS, "disconnect"):
            client.on(name, recorder_for(seen, name), namespace=namespace)
        await client.connect(
            self.url, namespaces=[namespace], auth={"token": token}, transports=["websocket"], wait_timeout=5
        )
        self.sockets.append(client)
        await seen.wait_for("authenticated")
        return Socket(client, namespace, seen)

    async def close(self) -> None:
        for ws in self.opened:
            await ws.close()
        for client in self.sockets:
            if client.connected:
                await client.disconnect()


@pytest.fixture
async def sides(cluster: Cluster) -> AsyncIterator[tuple[Side, Side]]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        a, b = (
            Side(name, node.url, session, GoApi(session, node.url), Api(session, node.url + "/api/v1"))
            for name, node in (("A", cluster.a), ("B", cluster.b))
        )
        try:
            yield a, b
        finally:
            await a.close()
            await b.close()


async def frame_where(client: WsClient, kind: str, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first `kind` frame's data that `match` accepts, waiting (bounded) for more while none does."""
    count = 1
    while True:
        frames = await client.wait_for(kind, count, timeout=10)
        for data in frames:
            if match(data):
                return data
        count = len(frames) + 1


async def ws_send(client: WsClient, chat_id: str, content: str) -> str:
    answer = await client.request("send_message", {"chat_id": chat_id, "content": content, "type": "text"})
    assert answer["type"] == "ack", answer
    return str(answer["data"]["message_id"])


async def go_login(go: GoApi, user: GoUser) -> str:
    status, body = await go.post("/auth/login", json={"email": user.email, "password": user.password})
    assert status == 200, body
    return str(body["data"]["access_token"])


# messages from every door ---------------------------------------------------------------------------------------------


async def test_a_send_through_each_door_of_either_process_reaches_every_door(sides: tuple[Side, Side]) -> None:
    a, b = sides
    alice, bob = await go_register(a.go, "Alice"), await go_register(b.go, "Bob")
    chat = await go_private(a.go, alice, bob.id)
    alice_ws_a = await a.ws(alice.token)
    bob_sio_b, bob_ws_b = await b.sio(bob.token), await b.ws(bob.token)

    sent: list[tuple[str, str]] = []  # (door, message id), in the order sent
    sent.append(("/ws on A", await ws_send(alice_ws_a, chat, "ws A")))
    sent.append(("/ws on B", await ws_send(bob_ws_b, chat, "ws B")))
    answer = await bob_sio_b.call("send_message", {"chatId": chat, "content": "sio B"})
    assert answer["success"] is True, answer
    sent.append(("Socket.IO on B", answer["data"]["id"]))
    sent.append(("/api on A", (await go_send(a.go, alice, chat, "api A"))["message_id"]))
    sent.append(("/api on B", (await go_send(b.go, bob, chat, "api B"))["message_id"]))
    status, body = await b.v1.post("/messages", token=bob.token, json={"chatId": chat, "content": "v1 B"})
    assert status == 201, body
    sent.append(("/api/v1 on B", body["data"]["id"]))
    status, body = await a.v1.post("/messages", token=alice.token, json={"chatId": chat, "content": "v1 A"})
    assert status == 201, body
    sent.append(("/api/v1 on A", body["data"]["id"]))
    ids = [mid for _, mid in sent]

    for client in (alice_ws_a, bob_ws_b):
        frames = await client.wait_for("new_message", len(ids), timeout=10)
        assert [m["message_id"] for m in frames] == ids, sent  # each once, in order
        assert all(m["chat_id"] == chat and isinstance(m["created_at"], int) for m in frames)
    # a Socket.IO sender's own socket has the ack instead (`docs/protocol.md`): the others, in order
    others = [mid for door, mid in sent if door != "Socket.IO on B"]
    pushed = await bob_sio_b.seen.wait_for("new_message", len(others), timeout=10)
    assert [m["id"] for m in pushed] == others, sent
    assert set(pushed[0]) == MESSAGE_KEYS
    barrier = await go_send(a.go, alice, chat, "last")  # after it, nothing sent before can still be on its way
    for client in (alice_ws_a, bob_ws_b):
        await frame_where(client, "new_message", lambda m: m["message_id"] == barrier["message_id"])
        assert len(client.of("new_message")) == len(ids) + 1
    await bob_sio_b.seen.wait_for("new_message", len(others) + 1, timeout=10)
    assert [m["id"] for m in bob_sio_b.seen.of("new_message")] == [*others, barrier["message_id"]]


async def test_receipts_typing_and_presence_cross_processes_to_ws(sides: tuple[Side, Side]) -> None:
    a, b = sides
    alice, bob = await go_register(a.go), await go_register(a.go, "Bob Typist")
    chat = await go_private(a.go, alice, bob.id)
    alice_ws_a = await a.ws(alice.token)

    bob_ws_b = await b.ws(bob.token)
    online = await frame_where(alice_ws_a, "user_status", lambda s: s["user_id"] == bob.id)
    assert online["status"] == "online"

    mid = await ws_send(alice_ws_a, chat, "on A")
    await frame_where(bob_ws_b, "new_message", lambda m: m["message_id"] == mid)
    delivered = await frame_where(alice_ws_a, "message_status", lambda s: s["status"] == "delivered")
    assert (delivered["message_id"], delivered["chat_id"]) == (mid, chat)
    answer = await bob_ws_b.request("mark_read", {"chat_id": chat, "message_id": mid})
    assert answer["type"] == "ack", answer
    read = await frame_where(alice_ws_a, "message_status", lambda s: s["status"] == "read")
    assert read["message_id"] == mid

    answer = await bob_ws_b.request("typing_start", {"chat_id": chat})
    assert answer["type"] == "ack", answer
    (typing,) = await alice_ws_a.wait_for("typing_start", timeout=10)
    assert typing == {"chat_id": chat, "user_id": bob.id, "user_name": "Bob Typist"}

    await bob_ws_b.close()
    offline = await frame_where(alice_ws_a, "user_status", lambda s: s["user_id"] == bob.id and s["status"] != "online")
    assert offline["status"] == "offline" and isinstance(offline["last_seen"], int)


# membership and logins changed on one process, applied on the other ---------------------------------------------------


async def test_a_member_removed_through_api_v1_on_a_stops_receiving_on_ws_on_b(sides: tuple[Side, Side]) -> None:
    a, b = sides
    alice, bob = await register(a.v1), await register(a.v1)
    status, body = await a.v1.post("/groups", token=alice.token, json={"name": "crew", "participants": [bob.id]})
    assert status == 201, body
    group = body["data"]["id"]
    status, body = await a.v1.post("/chats", token=alice.token, json={"type": "private", "participants": [bob.id]})
    assert status == 201, body
    side_chat = body["data"]["id"]
    bob_ws_b = await b.ws(bob.token)

    async def send(chat_id: str, content: str) -> str:
        status, body = await a.v1.post("/messages", token=alice.token, json={"chatId": chat_id, "content": content})
        assert status == 201, body
        return str(body["data"]["id"])

    first = await send(group, "while bob is in")
    await frame_where(bob_ws_b, "new_message", lambda m: m["message_id"] == first)
    status, body = await a.v1.delete(f"/groups/{group}/participants/{bob.id}", token=alice.token)
    assert status == 200, body
    after = await send(group, "bob is gone")
    marker = await send(side_chat, "marker")  # one channel keeps the order: after `after`
    await frame_where(bob_ws_b, "new_message", lambda m: m["message_id"] == marker)
    assert [m["message_id"] for m in bob_ws_b.of("new_message")] == [first, marker], f"{after} must not reach bob"
    answer = await bob_ws_b.request("send_message", {"chat_id": group, "content": "still here?"})
    assert answer["type"] == "error" and answer["data"]["code"] == 404, answer

    status, body = await a.v1.post(f"/groups/{group}/participants", token=alice.token, json={"userIds": [bob.id]})
    assert status in (200, 201), body
    back = await send(group, "welcome back")
    await frame_where(bob_ws_b, "new_message", lambda m: m["message_id"] == back)


async def test_a_logout_through_api_on_a_closes_that_logins_ws_on_b_with_4001(sides: tuple[Side, Side]) -> None:
    a, b = sides
    carol = await go_register(a.go)
    other_login = await go_login(b.go, carol)
    ended_b, kept_b, ended_a = await b.ws(carol.token), await b.ws(other_login), await a.ws(carol.token)
    status, body = await a.go.post("/auth/logout", token=carol.token)
    assert status == 200, body
    assert await wait_closed(ended_b, timeout=10) == 4001
    assert await wait_closed(ended_a, timeout=10) == 4001
    await pong(kept_b)
    assert not kept_b.closed.is_set()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await b.session.ws_connect(f"{b.url}/ws?token={carol.token}")
    assert refused.value.status == 401


async def test_a_logout_through_api_v1_on_a_closes_that_logins_ws_on_b_with_4001(sides: tuple[Side, Side]) -> None:
    a, b = sides
    dave = await register(a.v1)
    status, body = await b.v1.post("/auth/login", json={"email": dave.email, "password": dave.password})
    assert status == 200, body
    ended_b, kept_b = await b.ws(dave.token), await b.ws(body["data"]["token"])
    status, body = await a.v1.post("/auth/logout", token=dave.token)
    assert status == 200, body
    assert await wait_closed(ended_b, timeout=10) == 4001
    await pong(kept_b)
    assert not kept_b.closed.is_set()
