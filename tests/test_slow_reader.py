"""A client that stops reading cannot grow server memory, and gets everything back through `sync`.

The slow client speaks Engine.IO v4 / Socket.IO v5 itself over a raw aiohttp WebSocket with a tiny
receive buffer, reads up to one message, then never reads again. Two other users flood its chats.
The server must keep that client's outgoing queue at or under `limits.max_queue` the whole time
(every packet the server queues is checked), cut the client off, and a fresh socket of the same user
must recover every acknowledged message with `sync`, page by page.

Every wait is bounded in attempts and time; nothing asserts on how fast anything was.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from server.config import Config
from server.keys import SIO
from tests.conftest import Account, Server

MAX_QUEUE = 200
EPHEMERAL_QUEUE = 20
SENDERS_LOOPS = 8  # concurrent send loops per sender
PER_LOOP = 200  # messages per loop at least: 2 senders x 8 loops x 200 = 3200 messages
MAX_PER_LOOP = 800  # and on (to 12,800 in all) while the slow client is not cut off yet, for larger TCP buffers
CONTENT = "x" * 3000  # a few KB per message
RCVBUF = 4096  # the slow client's socket receive buffer


@pytest.fixture
def config(config: Config) -> Config:
    return config.replace(
        limits={
            "max_queue": MAX_QUEUE,
            "ephemeral_queue": EPHEMERAL_QUEUE,
            "messages_per_second": 100000,
            "messages_burst": 100000,
        }
    )


def rss_kb() -> int:
    """Resident memory of this process (the server runs in it), in KiB; 0 where /proc is missing."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def small_buffer_socket(addr_info: Any) -> socket.socket:
    """aiohttp's socket factory: a TCP socket whose receive window stays tiny (no autotuning)."""
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setblocking(False)
    return sock


class RawClient:
    """Engine.IO v4 / Socket.IO v5 by hand, enough to authenticate and read a few events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.eio_sid = ""

    async def frame(self) -> str:
        msg = await asyncio.wait_for(self.ws.receive(), 5)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        return msg.data

    async def event(self, name: str, limit: int = 50) -> Any:
        """The payload of the next `42["name", payload]`; answers pings, skips other events."""
        for _ in range(limit):
            data = await self.frame()
            if data == "2":  # Engine.IO ping
                await self.ws.send_str("3")
                continue
            if data.startswith("42"):
                event, *args = json.loads(data[2:])
                if event == name:
                    return args[0] if args else None
        raise AssertionError(f"no {name} within {limit} frames")

    async def open(self, token: str) -> dict[str, Any]:
        data = await self.frame()
        assert data.startswith("0"), data
        self.eio_sid = json.loads(data[1:])["sid"]
        await self.ws.send_str("40" + json.dumps({"token": token}))
        data = await self.frame()
        assert data.startswith("40") and "sid" in json.loads(data[2:]), data
        return await self.event("authenticated")


@pytest.fixture
async def raw_session() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(socket_factory=small_buffer_socket, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


async def test_slow_reader_is_cut_off_and_recovers_with_sync(
    server: Server, api: Any, make_user: Callable[..., Any], sockets: Callable[..., Any], raw_session: Any
) -> None:
    sio = server.app[SIO]
    slow, bob, carol = [await make_user() for _ in range(3)]

    async def chat(owner: Account, body: dict[str, Any]) -> str:
        status, answer = await api.post("/chats", json=body, token=owner.token)
        assert status == 201, answer
        return answer["data"]["id"]

    group = await chat(slow, {"type": "group", "name": "flood", "participants": [bob.id, carol.id]})
    with_bob = await chat(bob, {"type": "private", "participants": [slow.id]})
    with_carol = await chat(carol, {"type": "private", "participants": [slow.id]})

    # the slow client: authenticated over a raw WebSocket, it reads one message, then stops reading
    ws_url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    ws = await raw_session.ws_connect(ws_url, autoping=False, max_msg_size=0)
    raw = RawClient(ws)
    authenticated = await raw.open(slow.token)
    assert authenticated["user"]["id"] == slow.id
    assert raw.eio_sid in sio.eio.sockets

    senders = {bob.id: await sockets(bob.token), carol.id: await sockets(carol.token)}
    first = await senders[bob.id].call("send_message", {"chatId": group, "content": "before the flood"})
    assert first["success"], first
    seen = await raw.event("new_message")
    assert seen["id"] == first["data"]["id"]
    last_seen = seen["id"]
    # from here on, nobody reads `ws`

    # every packet queued for any client is checked against the bound
    max_seen = {"all": 0, "slow": 0, "checks": 0}
    over: list[tuple[str, int]] = []
    original = sio._send_eio_packet

    async def watched(eio_sid: str, eio_pkt: Any) -> None:
        await original(eio_sid, eio_pkt)
        sock = sio.eio.sockets.get(eio_sid)
        if sock is not None:
            size = sock.queue.qsize()
            max_seen["all"] = max(max_seen["all"], size)
            if eio_sid == raw.eio_sid:
                max_seen["slow"] = max(max_seen["slow"], size)
            if size > MAX_QUEUE:
                over.append((eio_sid, size))

    sio._send_eio_packet = watched
    rss_before = rss_kb()

    acked: list[str] = []
    failures: list[Any] = []
    attempts = 0

    def slow_socket_closed() -> bool:
        """Gone from the server, or closed and waiting for Engine.IO's sweep to drop it."""
        sock = sio.eio.sockets.get(raw.eio_sid)
        return sock is None or sock.closed

    def checkpoint() -> None:
        """Every client's server-side queue, looked at directly."""
        max_seen["checks"] += 1
        for eio_sid, sock in list(sio.eio.sockets.items()):
            size = sock.queue.qsize()
            max_seen["all"] = max(max_seen["all"], size)
            if size > MAX_QUEUE:
                over.append((eio_sid, size))

    async def flood(sender: Account, chats: list[str], loop: int) -> None:
        nonlocal attempts
        for n in range(MAX_PER_LOOP):
            if n >= PER_LOOP and sio.cut_off:
                break
            attempts += 1
            chat_id = chats[n % len(chats)]
            answer = await senders[sender.id].call(
                "send_message", {"chatId": chat_id, "content": f"{sender.username} {loop}/{n} {CONTENT}"}, timeout=10
            )
            if answer.get("success"):
                acked.append(answer["data"]["id"])
            else:
                failures.append(answer)
            if n % 50 == 0:
                checkpoint()

    try:
        await asyncio.wait_for(
            asyncio.gather(
                *(flood(bob, [with_bob, group], i) for i in range(SENDERS_LOOPS)),
                *(flood(carol, [with_carol, group], i) for i in range(SENDERS_LOOPS)),
            ),
            60,
        )
        checkpoint()
        # the cut-off happens as the queue fills; give the close a bounded moment to finish
        for _ in range(100):
            if sio.cut_off >= 1 and slow_socket_closed():
                break
            await asyncio.sleep(0.05)
    finally:
        sio._send_eio_packet = original
    rss_after = rss_kb()

    assert not failures, failures[:3]
    assert len(acked) == attempts >= 2 * SENDERS_LOOPS * PER_LOOP
    assert not over, f"queues above max_queue={MAX_QUEUE}: {over[:5]}"
    assert max_seen["slow"] <= MAX_QUEUE
    assert sio.cut_off >= 1, f"the slow client was never cut off (its queue peaked at {max_seen['slow']})"
    assert slow_socket_closed(), "the slow client is still connected"

    # the slow client's connection really ended: reading now finds what was in flight, then the end
    delivered, ended = 0, False
    for _ in range(len(acked) + 100):
        try:
            msg = await asyncio.wait_for(ws.receive(), 10)
        except TimeoutError:  # silence without an end: the connection is still open
            break
        except (aiohttp.ClientError, ConnectionError):
            ended = True
            break
        if msg.type != aiohttp.WSMsgType.TEXT:
            ended = True
            break
        delivered += msg.data.startswith('42["new_message"')
    assert ended, "the slow client's connection is still open"

    # a fresh socket of the same user catches up from the last message the slow one saw
    fresh = await sockets(slow.token)
    await fresh.seen.wait_for("authenticated")
    recovered: list[str] = []
    cursor, pages = last_seen, 0
    max_pages = len(acked) // 500 + 3
    while pages < max_pages:
        pages += 1
        answer = await fresh.call("sync", {"after": cursor, "limit": 500}, timeout=10)
        assert answer["success"], answer
        data = answer["data"]
        recovered += [m["id"] for m in data["messages"]]
        cursor = data["cursor"]
        if not data["hasMore"]:
            break
    else:
        pytest.fail(f"sync still had more after {max_pages} pages")

    rss_growth_mb = (rss_after - rss_before) / 1024
    print(
        f"\nslow reader: sent {attempts} messages ({len(acked)} acked, {len(CONTENT)} B each),"
        f" max queue seen {max_seen['slow']} (slow client) / {max_seen['all']} (any client, max_queue {MAX_QUEUE}),"
        f" cut-offs {sio.cut_off}, slow client then read {delivered} new_message from TCP buffers before the end,"
        f" recovered via sync {len(recovered)} in {pages} pages,"
        f" RSS {rss_before // 1024} -> {rss_after // 1024} MB (+{rss_growth_mb:.1f} MB, test process incl. server)"
    )
    assert len(recovered) == len(set(recovered)), "sync answered a message twice"
    assert recovered == sorted(acked), "sync must answer exactly the acknowledged messages, oldest first"
    assert rss_growth_mb < 200


async def test_a_client_that_asks_but_never_reads_is_cut_off(
    server: Server, api: Any, make_user: Callable[..., Any], raw_session: Any
) -> None:
    """Acks do not pass the emit path: a client that fires `sync` with acks and never reads is bounded too."""
    sio = server.app[SIO]
    reader, writer = await make_user(), await make_user()
    status, body = await api.post("/chats", json={"type": "private", "participants": [writer.id]}, token=reader.token)
    assert status == 201, body
    chat_id = body["data"]["id"]
    for n in range(40):  # each sync answer below carries these 40 messages: about 80 KB
        status, body = await api.post(
            "/messages", json={"chatId": chat_id, "content": f"{n} {CONTENT[:2000]}"}, token=writer.token
        )
        assert status == 201, body

    ws_url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    ws = await raw_session.ws_connect(ws_url, autoping=False, max_msg_size=0)
    raw = RawClient(ws)
    await raw.open(reader.token)
    rss_before = rss_kb()

    def slow_socket() -> Any:
        return sio.eio.sockets.get(raw.eio_sid)

    peak, asked = 0, 0
    for n in range(2 * MAX_QUEUE + 100):  # enough acks to pass the bound twice over
        sock = slow_socket()
        if sock is None or sock.closed:
            break
        peak = max(peak, sock.queue.qsize())
        try:
            await ws.send_str(f'42{n}["sync",{{"after":"2000-01-01T00:00:00.000Z"}}]')
        except (ConnectionError, aiohttp.ClientError):
            break
        asked += 1
        if n % 10 == 0:
            await asyncio.sleep(0.01)  # let the server answer; the client still reads nothing
    for _ in range(200):  # the answers still being made land, then the cut-off closes the socket
        sock = slow_socket()
        if sock is None or sock.closed:
            break
        peak = max(peak, sock.queue.qsize())
        await asyncio.sleep(0.05)
    rss_growth_mb = (rss_kb() - rss_before) / 1024
    sock = slow_socket()
    print(
        f"\nsilent asker: {asked} syncs asked, max queue seen {peak} (max_queue {MAX_QUEUE}), cut-offs {sio.cut_off},"
        f" RSS +{rss_growth_mb:.1f} MB"
    )
    assert peak <= MAX_QUEUE
    assert sio.cut_off >= 1
    assert sock is None or sock.closed, "the client that never reads is still connected"
    assert rss_growth_mb < 200
