"""Several server processes behind one Redis: sockets on different processes talk as if on one.

The module starts a real `redis-server` on a free port and two `python -m server serve`
processes, A and B, on their own ports with one SQLite data folder (WAL), one JWT secret and
`WHATSCHAT_REDIS_URL` pointing at that Redis. Clients connect to A or to B and exchange
messages, typing, receipts, presence and call signalling; membership changes and revoked logins
made through one process act on the sockets of the other. Then Redis is stopped (health says
so, sockets are closed and refused, REST keeps answering) and restarted on the same port
(health recovers, sockets reconnect, messages cross processes again). Last, `serve --workers 2`
runs two children on one port, and SIGTERM to the supervisor stops them all.

Every wait is bounded; nothing asserts on speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from server.config import Config
from server.keys import SIO
from tests.call_support import CALL_EVENTS
from tests.chat_support import MESSAGE_EVENTS
from tests.cluster_support import ROOT, Cluster, Node, health, server_env, two_processes, wait_until
from tests.conftest import (
    SERVER_EVENTS,
    Account,
    Api,
    Recorder,
    Socket,
    recorder_for,
    register,
    require_tool,
    start_server,
)
from tests.redis_support import RedisServer, free_port

pytestmark = pytest.mark.redis  # starts a redis-server: `make check` leaves this module out
MESSAGES_EACH_WAY = 25
EVENTS = (*MESSAGE_EVENTS, *CALL_EVENTS)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from two_processes(tmp_path_factory.mktemp("multiprocess"))


@dataclass
class Side:
    """REST and sockets of one process."""

    name: str
    url: str
    api: Api
    clients: list[socketio.AsyncClient]

    async def connect(self, user: Account, namespace: str = "/", wait: bool = True) -> Socket:
        client = socketio.AsyncClient(reconnection=False)
        seen = Recorder()
        for name in (*SERVER_EVENTS, *EVENTS, "disconnect"):
            client.on(name, recorder_for(seen, name), namespace=namespace)
        await client.connect(
            self.url, namespaces=[namespace], auth={"token": user.token}, transports=["websocket"], wait_timeout=5
        )
        self.clients.append(client)
        socket_ = Socket(client, namespace, seen)
        if wait:
            await seen.wait_for("authenticated")
        return socket_


@pytest.fixture
async def sides(cluster: Cluster) -> AsyncIterator[tuple[Side, Side]]:
    clients: list[socketio.AsyncClient] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        a = Side("A", cluster.a.url, Api(session, cluster.a.url + "/api/v1"), clients)
        b = Side("B", cluster.b.url, Api(session, cluster.b.url + "/api/v1"), clients)
        try:
            yield a, b
        finally:
            for client in clients:
                if client.connected:
                    await client.disconnect()


async def send(socket_: Socket, chat_id: str, content: str) -> dict[str, Any]:
    answer = await socket_.call("send_message", {"chatId": chat_id, "content": content})
    assert answer["success"] is True, answer
    return answer["data"]


async def private_chat(api: Api, a: Account, b: Account) -> str:
    status, body = await api.post("/chats", token=a.token, json={"type": "private", "participants": [b.id]})
    assert status in (200, 201), body
    return body["data"]["id"]


def ids(messages: list[dict[str, Any]]) -> list[str]:
    return [m["id"] for m in messages]


# messages, typing, receipts, presence ---------------------------------------------------------------------------------


async def test_messages_typing_and_receipts_cross_processes(sides: tuple[Side, Side]) -> None:
    a, b = sides
    alice, bob = await register(a.api), await register(b.api)
    chat = await private_chat(a.api, alice, bob)
    alice_a, bob_b = await a.connect(alice), await b.connect(bob)

    sent_on_a = [await send(alice_a, chat, f"a{i}") for i in range(MESSAGES_EACH_WAY)]
    received_on_b = await bob_b.seen.wait_for("new_message", MESSAGES_EACH_WAY, timeout=10)
    sent_on_b = [await send(bob_b, chat, f"b{i}") for i in range(MESSAGES_EACH_WAY)]
    received_on_a = await alice_a.seen.wait_for("new_message", MESSAGES_EACH_WAY, timeout=10)
    print(
        f"\nmessages: {len(sent_on_a)} sent on A, {len(received_on_b)} received on B;"
        f" {len(sent_on_b)} sent on B, {len(received_on_a)} received on A"
    )
    assert ids(received_on_b) == ids(sent_on_a)  # all of them, once each, in order
    assert ids(received_on_a) == ids(sent_on_b)

    for typist, watcher, user in ((alice_a, bob_b, alice), (bob_b, alice_a, bob)):
        for event in ("typing_start", "typing_stop"):
            assert (await typist.call(event, {"chatId": chat}))["success"] is True
            expected = {"chatId": chat, "userId": user.id, "username": user.username, "name": user.username}
            assert (await watcher.seen.wait_for(event))[-1] == expected

    read = await bob_b.call("mark_read", {"chatId": chat, "messageId": sent_on_a[-1]["id"]})
    assert read["success"] is True, read
    (status,) = await alice_a.seen.wait_for("message_status")
    assert (status["messageId"], status["userId"], status["status"]) == (sent_on_a[-1]["id"], bob.id, "read")
    delivered = await alice_a.call("message_delivered", {"messageId": sent_on_b[0]["id"]})
    assert delivered["success"] is True, delivered
    statuses = await bob_b.seen.wait_for("message_status")
    assert (statuses[-1]["messageId"], statuses[-1]["status"]) == (sent_on_b[0]["id"], "delivered")
    print("typing: 4 events crossed; receipts: read A<-B and delivered B<-A")


async def test_presence_changes_reach_the_other_process(sides: tuple[Side, Side]) -> None:
    a, b = sides
    alice, carol = await register(a.api), await register(a.api)
    await private_chat(a.api, alice, carol)
    alice_a = await a.connect(alice)

    carol_b = await b.connect(carol)
    online = await alice_a.seen.wait_for("user_status_changed")
    assert (online[-1]["userId"], online[-1]["status"]) == (carol.id, "online")
    await carol_b.client.disconnect()
    changes = await alice_a.seen.wait_for("user_status_changed", 2)
    assert (changes[-1]["userId"], changes[-1]["status"]) == (carol.id, "offline")
    assert changes[-1]["lastSeen"]


# calls ----------------------------------------------------------------------------------------------------------------


def _not_shared_yet(answer: dict[str, Any], step: str) -> None:
    """Live calls and presence live in each process until they are shared through Redis."""
    code = (answer.get("error") or {}).get("code")
    if not answer.get("success") and code in ("CALL_002", "RES_002"):
        pytest.xfail(f"live calls shared through Redis are being wired ({step} answered {code})")


async def test_call_signalling_crosses_processes(sides: tuple[Side, Side]) -> None:
    a, b = sides
    alice, bob = await register(a.api), await register(a.api)
    await private_chat(a.api, alice, bob)
    alice_a, bob_b = await a.connect(alice), await b.connect(bob)

    started = await alice_a.call("start_call", {"type": "video", "participants": [bob.id]})
    _not_shared_yet(started, "start_call on A for a callee on B")
    assert started["success"] is True, started
    call_id = started["data"]["id"]
    (incoming,) = await bob_b.seen.wait_for("incoming_call")
    assert incoming["id"] == call_id and incoming["initiatorId"] == alice.id

    answered = await bob_b.call("answer_call", {"callId": call_id})
    _not_shared_yet(answered, "answer_call on B for a call started on A")
    assert answered["success"] is True and answered["data"]["status"] == "ongoing", answered
    updates = await alice_a.seen.wait_for("call_status_update", 2)
    assert updates[-1]["status"] == "ongoing"

    sdp = {"type": "offer", "sdp": "v=0 offer"}
    relayed = await alice_a.call("webrtc_offer", {"callId": call_id, "to": bob.id, "sdp": sdp})
    assert relayed["success"] is True, relayed
    (offer,) = await bob_b.seen.wait_for("webrtc_offer")
    assert (offer["callId"], offer["from"], offer["sdp"]) == (call_id, alice.id, sdp)
    reply = {"type": "answer", "sdp": "v=0 answer"}
    relayed = await bob_b.call("webrtc_answer", {"callId": call_id, "to": alice.id, "sdp": reply})
    assert relayed["success"] is True, relayed
    (answer,) = await alice_a.seen.wait_for("webrtc_answer")
    assert (answer["from"], answer["sdp"]) == (bob.id, reply)
    candidate = {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}
    relayed = await bob_b.call("webrtc_ice_candidate", {"callId": call_id, "to": alice.id, "candidate": candidate})
    assert relayed["success"] is True, relayed
    assert (await alice_a.seen.wait_for("webrtc_ice_candidate"))[0]["candidate"] == candidate

    ended = await bob_b.call("end_call", {"callId": call_id})
    assert ended["success"] is True and ended["data"]["status"] == "completed", ended
    assert (await alice_a.seen.wait_for("call_status_update", 3))[-1]["status"] == "completed"


# membership and logins made through one process, applied by the other ------------------------------------------------


async def test_a_member_added_on_a_gets_the_next_message_on_b(sides: tuple[Side, Side]) -> None:
    a, b = sides
    alice, bob, carol = await register(a.api), await register(a.api), await register(a.api)
    status, body = await a.api.post("/groups", token=alice.token, json={"name": "crew", "participants": [carol.id]})
    assert status == 201, body
    group = body["data"]["id"]
    side_chat = await private_chat(a.api, alice, bob)  # for a marker that bob does receive
    alice_a, bob_b = await a.connect(alice), await b.connect(bob)

    status, body = await a.api.post(f"/groups/{group}/participants", token=alice.token, json={"userIds": [bob.id]})
    assert status in (200, 201), body
    first = await send(alice_a, group, "welcome")
    (received,) = await bob_b.seen.wait_for("new_message")
    assert received["id"] == first["id"]
    assert (await bob_b.seen.wait_for("participant_added"))[0]["chatId"] == group

    status, body = await a.api.delete(f"/groups/{group}/participants/{bob.id}", token=alice.token)
    assert status == 200, body
    await bob_b.seen.wait_for("participant_removed")
    after = await send(alice_a, group, "bob is gone")
    marker = await send(alice_a, side_chat, "marker")  # one channel keeps the order: after `after`
    messages = await bob_b.seen.wait_for("new_message", 2)
    assert ids(messages) == [first["id"], marker["id"]], f"{after['id']} must not reach bob"


async def test_a_login_revoked_on_a_is_refused_and_disconnected_on_b(sides: tuple[Side, Side]) -> None:
    a, b = sides
    dave = await register(a.api)
    live_b = await b.connect(dave)
    live_b_status = await b.connect(dave, "/status")
    assert (await b.api.get("/auth/me", token=dave.token))[0] == 200

    status, body = await a.api.post("/auth/logout", token=dave.token)
    assert status == 200, body

    for live in (live_b, live_b_status):
        (why,) = await live.seen.wait_for("unauthorized")
        assert why["code"] == "AUTH_001"
        await live.seen.wait_for("disconnect")
    status, body = await b.api.get("/auth/me", token=dave.token)
    assert status == 401 and body["error"]["code"] == "AUTH_001", body
    late = await b.connect(dave, wait=False)
    (refused,) = await late.seen.wait_for("unauthorized")
    assert refused["code"] == "AUTH_001"
    await late.seen.wait_for("disconnect")
    print("\nrevoked on A: REST 401 on B, 2 live sockets on B cut, a new socket on B refused")


# Redis goes away and comes back (last: it restarts the module's Redis) ------------------------------------------------


async def test_losing_redis_is_reported_and_the_service_recovers(cluster: Cluster, sides: tuple[Side, Side]) -> None:
    """Without Redis a process cannot promise its sockets every event: it closes them (clients reconnect
    and catch up), refuses new ones and answers sends 503 after storing them; all of it comes back
    with Redis, and messages cross processes again."""
    a, b = sides
    alice, bob = await register(a.api), await register(a.api)
    chat = await private_chat(a.api, alice, bob)
    alice_a, bob_b = await a.connect(alice), await b.connect(bob)
    await send(alice_a, chat, "before")
    await bob_b.seen.wait_for("new_message")

    cluster.redis.stop()
    try:
        status, data = await asyncio.to_thread(health, b.url)
        assert status == 200, data
        assert data["status"] == "degraded" and data["services"]["redis"] == "unhealthy", data
        assert data["services"]["database"] == "healthy"
        status, data = await asyncio.to_thread(health, a.url)
        assert status == 200 and data["status"] == "degraded", data
        await alice_a.seen.wait_for("disconnect")  # told at once, not left to miss what others send
        await bob_b.seen.wait_for("disconnect")
        refused = socketio.AsyncClient(reconnection=False)
        try:  # a new socket is refused at the handshake: the client retries with its backoff
            with pytest.raises(socketio.exceptions.ConnectionError):
                await refused.connect(b.url, auth={"token": bob.token}, transports=["websocket"], wait_timeout=5)
        finally:
            if refused.eio.http is not None:
                await refused.eio.http.close()
        status, body = await a.api.post("/messages", token=alice.token, json={"chatId": chat, "content": "down"})
        assert status == 503 and body["error"]["code"] == "SYS_001", body
    finally:
        await asyncio.to_thread(cluster.redis.start)

    async def recovered(url: str) -> bool:
        for _ in range(100):  # at most ~10 s
            status, data = await asyncio.to_thread(health, url)
            if status == 200 and data.get("status") == "healthy":
                return True
            await asyncio.sleep(0.1)
        return False

    assert await recovered(b.url) and await recovered(a.url), cluster.logs()
    alice_a, bob_b = await a.connect(alice), await b.connect(bob)
    synced = await bob_b.call("sync", {"after": "1970-01-01T00:00:00.000Z"})
    assert [m["content"] for m in synced["data"]["messages"]] == ["before", "down"]  # stored, though 503
    sent = await send(alice_a, chat, "after")
    (received,) = [m for m in await bob_b.seen.wait_for("new_message") if m["content"] == "after"]
    assert received["id"] == sent["id"]
    print("\nredis down: sockets closed, new ones refused, a send 503 (stored); back: healthy, messages cross")


# on MongoDB's wire protocol: FerretDB 1.24 ----------------------------------------------------------------------------


async def test_two_processes_on_one_ferretdb_share_messages_and_history(tmp_path: Path) -> None:
    """The store is shared through FerretDB instead of an SQLite folder: what A stores, B delivers and reads back."""
    from tests.ferretdb_support import FerretDB  # a skip (a failure under CI) only here without the binary

    ferretdb = FerretDB(tmp_path / "ferretdb")
    redis = RedisServer(log=tmp_path / "redis.log")
    nodes: list[Node] = []
    clients: list[socketio.AsyncClient] = []
    try:
        await asyncio.to_thread(ferretdb.start)
        await asyncio.to_thread(redis.start)
        mongodb = {"WHATSCHAT_DATABASE_BACKEND": "mongodb", "WHATSCHAT_DATABASE_URL": ferretdb.url + "whatschat"}
        for name in ("A", "B"):  # one after the other: the first creates the collections and indexes
            env = server_env(tmp_path / f"data-{name}", redis.url, free_port(), **mongodb)
            nodes.append(Node(name, env, tmp_path / f"server-{name}.log"))
            await asyncio.to_thread(nodes[-1].start)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            a, b = (Side(node.name, node.url, Api(session, node.url + "/api/v1"), clients) for node in nodes)
            alice, bob = await register(a.api), await register(b.api)
            chat = await private_chat(a.api, alice, bob)
            bob_b = await b.connect(bob)
            alice_a = await a.connect(alice)
            sent = [await send(alice_a, chat, f"through A {i}") for i in range(3)]
            received = await bob_b.seen.wait_for("new_message", len(sent), timeout=10)
            assert ids(received) == ids(sent)
            status, body = await b.api.get(f"/messages/{chat}?limit=50", token=bob.token)
            assert status == 200, body
            assert ids(body["data"]["messages"]) == ids(sent)[::-1], body  # newest first, from the shared store
            assert [m["content"] for m in body["data"]["messages"]] == [f"through A {i}" for i in (2, 1, 0)]
            print(f"\nFerretDB: {len(sent)} sent on A, {len(received)} received on B, all in B's history")
    finally:
        for client in clients:
            if client.connected:
                await client.disconnect()
        for node in nodes:
            node.stop()
        redis.stop()
        ferretdb.stop()


# serve --workers ------------------------------------------------------------------------------------------------------


def test_workers_above_one_need_redis(tmp_path: Path) -> None:
    env = server_env(tmp_path / "data", "", free_port())
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--workers", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode != 0
    assert b"redis.url" in done.stderr, done.stderr


async def test_serve_workers_share_one_port_and_stop_together(tmp_path: Path) -> None:
    binary = require_tool("redis-server")
    redis = RedisServer(binary, tmp_path / "redis.log")
    node = Node("workers", server_env(tmp_path / "data", redis.url, free_port()), tmp_path / "workers.log")
    node.args = ("--workers", "2")
    try:
        await asyncio.to_thread(redis.start)
        await asyncio.to_thread(node.start)
        processes: dict[str, int] = {}
        deadline = time.monotonic() + 20  # the second child may bind a little after the first answers
        while time.monotonic() < deadline:  # each on a new connection: the kernel spreads them over the children
            status, data = await asyncio.to_thread(health, node.url)
            assert status == 200 and data["services"]["redis"] == "healthy", data
            processes[data["process"]] = processes.get(data["process"], 0) + 1
            if len(processes) == 2 and min(processes.values()) >= 3:
                break
        print(f"\nhealth answers per worker on one port: {processes}")
        assert len(processes) == 2, node.tail()
        pids = [int(name.rsplit(":", 2)[1]) for name in processes]
        assert node.proc is not None and node.proc.pid not in pids

        node.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(node.proc.wait, 30)
        assert code == 0, node.tail()

        def gone(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        await asyncio.to_thread(wait_until, lambda: all(gone(pid) for pid in pids), 10, "a worker outlived SIGTERM")
        print(f"SIGTERM to the supervisor: exit code {code}, workers {pids} gone")
    finally:
        with contextlib.suppress(Exception):
            node.stop()
        redis.stop()


# in this process: the Redis pieces open and close cleanly (warnings are errors here) ---------------------------------


async def test_the_app_with_redis_starts_degraded_and_closes_cleanly(tmp_path: Path, config: Config) -> None:
    """In this process (warnings are errors): no Redis at start-up is `degraded`, not fatal; losing it
    later closes the sockets (they would miss other processes' events) and makes no emit raise or
    stall; the listener comes back with Redis and sockets connect again; nothing leaks at close."""
    binary = require_tool("redis-server")
    redis = RedisServer(binary, tmp_path / "redis.log")
    srv = await start_server(config.replace(redis={"url": redis.url}))  # no Redis yet
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, srv.api)
            status, body = await api.get("/health")
            assert status == 200 and body["data"]["status"] == "degraded", body
            assert body["data"]["services"]["redis"] == "unhealthy"
            await asyncio.to_thread(redis.start)
            for _ in range(100):  # healthy once Redis answers and the channel is subscribed (backoff: 2 s at most)
                status, body = await api.get("/health")
                if body["data"]["status"] == "healthy":
                    break
                await asyncio.sleep(0.05)
            assert status == 200 and body["data"]["status"] == "healthy", body
            user = await register(api)
            live = await Side("in-process", srv.url, api, []).connect(user)

            await asyncio.to_thread(redis.stop)
            await live.seen.wait_for("disconnect")  # closed: it would miss what other processes send
            sio = srv.app[SIO]
            for _ in range(3):  # python-socketio's own emits never raise or stall while Redis is away
                payload = {"userId": user.id, "status": "away", "lastSeen": None}
                await asyncio.wait_for(sio.emit("user_status_changed", payload, room=f"user:{user.id}"), 5)
            status, body = await api.get("/health")
            assert status == 200 and body["data"]["services"]["redis"] == "unhealthy", body
            await asyncio.to_thread(redis.start)  # the same port again
            for _ in range(100):  # the listener resubscribes within its backoff (at most 2 s)
                if srv.app[SIO].manager.subscribed.is_set():
                    break
                await asyncio.sleep(0.05)
            assert srv.app[SIO].manager.subscribed.is_set()
            live = await Side("in-process", srv.url, api, []).connect(user)
            await live.client.disconnect()
    finally:
        await srv.runner.cleanup()
        redis.stop()
