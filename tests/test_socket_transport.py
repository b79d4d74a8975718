"""The Engine.IO transport under real clients: compression policy, heartbeat, long-polling, upgrades, closes.

`handlers.sio.transport` serves Engine.IO with less state per socket than python-engineio
(its own queue, reader, writer, heartbeat and environ); these tests hold it to the protocol
with real clients: a raw WebSocket speaking Engine.IO 4 / Socket.IO 5 by hand (to see the
frames, the negotiated extension and the pings), python-socketio's `AsyncClient` over each
transport, and raw long-polling. Node's socket.io-client is covered by the Node test files.

Every wait is bounded; nothing asserts on how fast anything happened or on memory sizes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from engineio.async_drivers.aiohttp import translate_request as engineio_translate_request

from handlers.sio.transport import EngineServer, EngineSocket, PacketQueue
from server.config import Config, ConfigError, load_config
from server.keys import SIO
from tests.chat_support import private_chat
from tests.conftest import Account, Api, Server, register, start_server

NS = "/messages"
WAIT = 10.0  # seconds any single expected thing may take before the test fails


class RawSocket:
    """Engine.IO 4 / Socket.IO 5 by hand over aiohttp's WebSocket client.

    A reader task collects every text frame; pings ("2") are counted and, unless
    `answer_pings` is off, answered with "3" as a client must.
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, answer_pings: bool) -> None:
        self.ws = ws
        self.answer_pings = answer_pings
        self.frames: list[str] = []
        self.pings = 0
        self.closed = asyncio.Event()
        self._changed = asyncio.Condition()
        self._acks = 0
        self._reader = asyncio.ensure_future(self._read())

    @property
    def extensions(self) -> str | None:
        """The `Sec-WebSocket-Extensions` the server answered the handshake with."""
        return self.ws._response.headers.get("Sec-WebSocket-Extensions")

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                if msg.data == "2":
                    self.pings += 1
                    if self.answer_pings:
                        await self.ws.send_str("3")
                async with self._changed:
                    self.frames.append(msg.data)
                    self._changed.notify_all()
        finally:
            self.closed.set()
            async with self._changed:
                self._changed.notify_all()

    async def frame(self, test: Callable[[str], bool], timeout: float = WAIT) -> str:
        """The first frame received so far or later that passes `test`."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: any(map(test, self.frames))), timeout)
        return next(f for f in self.frames if test(f))

    async def wait_pings(self, count: int) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.pings >= count), WAIT)

    async def authenticate(self, token: str) -> dict[str, Any]:
        await self.ws.send_str(f"40{NS}," + json.dumps({"token": token}))
        await self.frame(lambda f: f.startswith(f"40{NS},"))
        authenticated = await self.frame(lambda f: f.startswith(f'42{NS},["authenticated"'))
        return json.loads(authenticated[len(f"42{NS},") :])[1]

    async def call(self, event: str, data: Any) -> Any:
        """Emit with an ack id and answer the ack's payload."""
        self._acks += 1
        ack = self._acks
        await self.ws.send_str(f"42{NS},{ack}" + json.dumps([event, data]))
        answer = await self.frame(lambda f: f.startswith(f"43{NS},{ack}["))
        return json.loads(answer[len(f"43{NS},{ack}") :])[0]

    async def event(self, name: str) -> Any:
        found = await self.frame(lambda f: f.startswith(f'42{NS},["{name}"'))
        return json.loads(found[len(f"42{NS},") :])[1]

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(self._reader, WAIT)


@pytest.fixture
async def raw(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Any]]:
    """`await raw(target=None, compress=0, headers=None, answer_pings=True)` -> an open `RawSocket`.

    Without `target`, to the test's `server`.
    """
    opened: list[RawSocket] = []
    async with aiohttp.ClientSession() as session:

        async def open_socket(
            target: Server | None = None,
            compress: int = 0,
            headers: Any = None,
            answer_pings: bool = True,
            query: str = "EIO=4&transport=websocket",
        ) -> RawSocket:
            url = (target or request.getfixturevalue("server")).url + "/socket.io/?" + query
            ws = await session.ws_connect(url, compress=compress, headers=headers, autoping=True, max_msg_size=0)
            socket = RawSocket(ws, answer_pings)
            opened.append(socket)
            await socket.frame(lambda f: f.startswith("0{"))
            return socket

        yield open_socket
        for socket in opened:
            await socket.close()


@pytest.fixture
async def servers(config: Config) -> AsyncIterator[Callable[..., Any]]:
    """`await servers(section={...}, ...)` -> a `Server` with those settings changed (stopped at the end)."""
    started: list[Server] = []

    async def start(**sections: dict[str, Any]) -> Server:
        data_dir = str(Path(config.data_dir) / f"server{len(started)}")  # a store of its own
        srv = await start_server(config.replace(data_dir=data_dir, **sections))
        started.append(srv)
        return srv

    yield start
    for srv in started:
        await srv.runner.cleanup()


async def pair(target: Server) -> tuple[Api, Account, Account, str]:
    session = aiohttp.ClientSession()
    api = Api(session, target.api)
    alice, bob = await register(api), await register(api)
    chat = await private_chat(api, alice, bob)
    return api, alice, bob, chat


# permessage-deflate: what `socketio.websocket_compression` says


@pytest.mark.parametrize("compression", [False, True])
async def test_a_client_offering_deflate_gets_what_the_setting_says_and_messages_flow(
    servers: Callable[..., Any], raw: Callable[..., Any], compression: bool
) -> None:
    target = await servers(socketio={"websocket_compression": compression})
    api, alice, bob, chat = await pair(target)
    try:
        sender = await raw(target, compress=15)  # as browsers do: permessage-deflate offered
        receiver = await raw(target, compress=15)
        if compression:
            assert sender.extensions is not None and sender.extensions.startswith("permessage-deflate")
        else:
            assert sender.extensions is None
        assert (await sender.authenticate(alice.token))["user"]["id"] == alice.id
        await receiver.authenticate(bob.token)
        content = "compressible " * 200  # large enough that a compressing side would compress it
        answer = await sender.call("send_message", {"chatId": chat, "content": content})
        assert answer["success"] is True, answer
        received = await receiver.event("new_message")
        assert received["content"] == content and received["id"] == answer["data"]["id"]
    finally:
        await api.session.close()


@pytest.mark.parametrize("compression", [False, True])
async def test_a_client_not_offering_deflate_never_gets_it(
    servers: Callable[..., Any], raw: Callable[..., Any], compression: bool
) -> None:
    target = await servers(socketio={"websocket_compression": compression})
    socket = await raw(target, compress=0)
    assert socket.extensions is None


def test_the_setting_defaults_to_off_and_reads_from_the_environment() -> None:
    assert load_config(None, {}).socketio.websocket_compression is False
    on = load_config(None, {"WHATSCHAT_SOCKETIO_WEBSOCKET_COMPRESSION": "true"})
    assert on.socketio.websocket_compression is True
    with pytest.raises(ConfigError, match=r"socketio\.websocket_compression"):
        load_config(None, {"WHATSCHAT_SOCKETIO_WEBSOCKET_COMPRESSION": "sometimes"})


# python-socketio's client over each transport


@pytest.mark.parametrize(
    "transports", [["websocket"], ["polling"], ["polling", "websocket"]], ids=["websocket", "polling", "upgrade"]
)
async def test_python_socketio_clients_connect_and_chat_over_every_transport(
    server: Server, api: Api, sockets: Callable[..., Any], transports: list[str]
) -> None:
    alice, bob = await register(api), await register(api)
    chat = await private_chat(api, alice, bob)
    sender = await sockets(alice.token, namespace=NS, transports=transports)
    receiver = await sockets(bob.token, namespace=NS, transports=transports, events=("new_message",))
    await sender.seen.wait_for("authenticated")
    await receiver.seen.wait_for("authenticated")
    answer = await sender.call("send_message", {"chatId": chat, "content": "over " + "+".join(transports)})
    assert answer["success"] is True, answer
    received = await receiver.seen.wait_for("new_message")
    assert received[0]["id"] == answer["data"]["id"]
    if transports == ["polling", "websocket"]:  # the upgrade from long-polling happened, and held
        for _ in range(100):
            if sender.client.transport() == "websocket":
                break
            await asyncio.sleep(0.05)
        assert sender.client.transport() == "websocket"
        assert (await sender.call("mark_read", {"chatId": chat}))["success"] is True


async def test_raw_long_polling_handshakes_authenticates_and_closes(server: Server, api: Api) -> None:
    alice = await register(api)
    base = server.url + "/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as session:
        async with session.get(base) as response:
            assert response.status == 200
            opened = await response.text()
        assert opened.startswith("0{")
        sid = json.loads(opened[1:])["sid"]
        url = f"{base}&sid={sid}"
        async with session.post(url, data=f"40{NS}," + json.dumps({"token": alice.token})) as response:
            assert response.status == 200
        seen = ""
        for _ in range(10):
            async with session.get(url) as response:
                assert response.status == 200
                seen += "\x1e" + await response.text()
            if '["authenticated"' in seen:
                break
        assert f"40{NS}," in seen and f'42{NS},["authenticated"' in seen
        async with session.post(url, data="1") as response:  # close
            assert response.status == 200
        # no poll was open, and a client that said goodbye sends none: the session goes at once
        assert sid not in server.app[SIO].eio.sockets
        async with session.get(url) as response:
            assert response.status == 400  # the session is gone


# the heartbeat


@pytest.fixture
def quick_pings() -> dict[str, Any]:
    return {"socketio": {"ping_interval": 0.2, "ping_timeout": 0.4}}


async def test_a_client_answering_pings_stays_connected_through_many(
    servers: Callable[..., Any], raw: Callable[..., Any], quick_pings: dict[str, Any]
) -> None:
    target = await servers(**quick_pings)
    api, alice, _, chat = await pair(target)
    try:
        socket = await raw(target)
        await socket.authenticate(alice.token)
        await socket.wait_pings(5)
        assert not socket.closed.is_set()
        assert (await socket.call("mark_read", {"chatId": chat}))["success"] is True
    finally:
        await api.session.close()


async def test_a_websocket_client_that_stops_answering_pings_is_closed(
    servers: Callable[..., Any], raw: Callable[..., Any], quick_pings: dict[str, Any]
) -> None:
    target = await servers(**quick_pings)
    socket = await raw(target, answer_pings=False)
    await socket.wait_pings(1)
    # python-engineio sends no CLOSE packet to a client gone silent: the WebSocket just closes
    await asyncio.wait_for(socket.closed.wait(), WAIT)
    eio = target.app[SIO].eio
    for _ in range(100):
        if not eio.sockets:
            break
        await asyncio.sleep(0.05)
    assert not eio.sockets  # and the server forgot it


async def test_a_polling_client_that_stops_polling_is_closed(
    servers: Callable[..., Any], quick_pings: dict[str, Any]
) -> None:
    target = await servers(**quick_pings)
    base = target.url + "/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as session:
        async with session.get(base) as response:
            sid = json.loads((await response.text())[1:])["sid"]
        eio = target.app[SIO].eio
        for _ in range(200):  # its ping goes unanswered: closed within ping_timeout
            if sid not in eio.sockets or eio.sockets[sid].closed:
                break
            await asyncio.sleep(0.05)
        assert sid not in eio.sockets or eio.sockets[sid].closed


async def test_python_socketio_client_keeps_up_with_quick_pings(
    servers: Callable[..., Any], quick_pings: dict[str, Any]
) -> None:
    target = await servers(**quick_pings)
    api, alice, _, chat = await pair(target)
    client = socketio.AsyncClient(reconnection=False)
    try:
        await client.connect(target.url, namespaces=[NS], auth={"token": alice.token}, transports=["websocket"])
        await asyncio.sleep(1.5)  # several ping intervals, answered by the client on its own
        assert client.connected
        answer = await client.call("mark_read", {"chatId": chat}, namespace=NS, timeout=WAIT)
        assert answer["success"] is True
    finally:
        await client.disconnect()
        await api.session.close()


# closes, and frames that are not what they should be


async def test_a_server_side_close_sends_close_then_closes_the_websocket(
    server: Server, raw: Callable[..., Any]
) -> None:
    socket = await raw()
    sid = json.loads(socket.frames[0][1:])["sid"]
    await server.app[SIO].eio.disconnect(sid)
    await socket.frame(lambda f: f == "1")
    await asyncio.wait_for(socket.closed.wait(), WAIT)


async def test_a_frame_that_is_not_engine_io_ends_only_that_connection(
    server: Server, api: Api, raw: Callable[..., Any]
) -> None:
    alice = await register(api)
    broken = await raw()
    await broken.ws.send_str("x-not-a-packet")
    await asyncio.wait_for(broken.closed.wait(), WAIT)
    healthy = await raw()
    assert (await healthy.authenticate(alice.token))["user"]["id"] == alice.id


async def test_a_bad_socket_io_packet_is_dropped_and_the_connection_lives_on(
    server: Server, api: Api, raw: Callable[..., Any]
) -> None:
    alice, bob = await register(api), await register(api)
    chat = await private_chat(api, alice, bob)
    socket = await raw()
    await socket.authenticate(alice.token)
    await socket.ws.send_str(f"42{NS},[not json")
    assert (await socket.call("mark_read", {"chatId": chat}))["success"] is True


async def test_a_frame_over_max_payload_ends_the_connection(
    servers: Callable[..., Any], raw: Callable[..., Any]
) -> None:
    target = await servers(socketio={"max_payload": 2048})
    socket = await raw(target)
    await socket.ws.send_str("4" + "x" * 4096)
    await asyncio.wait_for(socket.closed.wait(), WAIT)


# the checks python-engineio makes before opening a WebSocket


async def test_websocket_origins_are_checked_before_opening(
    servers: Callable[..., Any], raw: Callable[..., Any]
) -> None:
    target = await servers(socketio={"cors_origins": ["http://ok.example"]})
    for origin in ("http://ok.example", target.url):  # a listed origin, and the server's own page
        assert (await raw(target, headers={"Origin": origin})).frames[0].startswith("0{")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await raw(target, headers={"Origin": "http://evil.example"})
    assert refused.value.status == 400


@pytest.mark.parametrize("query", ["EIO=3&transport=websocket", "EIO=4&transport=carrier-pigeon"])
async def test_websocket_opens_python_engineio_refuses_are_refused(
    server: Server, raw: Callable[..., Any], query: str
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await raw(query=query)
    assert refused.value.status == 400


async def test_the_environ_kept_for_a_socket_is_python_engineios(server: Server, raw: Callable[..., Any]) -> None:
    headers = [("X-Forwarded-Proto", "https"), ("X-Twice", "a"), ("X-Twice", "b"), ("Content-Type", "text/plain")]
    socket = await raw(headers=headers, query="EIO=4&transport=websocket&extra=1")
    sid = json.loads(socket.frames[0][1:])["sid"]
    environ = server.app[SIO].environ[sid]
    assert dict(environ) == engineio_translate_request(environ["aiohttp.request"])
    assert environ["HTTP_X_TWICE"] == "a,b" and environ["wsgi.url_scheme"] == "https"
    assert environ["QUERY_STRING"] == "EIO=4&transport=websocket&extra=1"
    assert "HTTP_MISSING" not in environ and environ.get("HTTP_MISSING") is None
    environ["custom"] = 1
    del environ["HTTP_X_TWICE"]
    assert environ["custom"] == 1 and "HTTP_X_TWICE" not in environ and "custom" in dict(environ)


async def test_every_socket_is_lean_whatever_transport_opened_it(server: Server, api: Api, sockets: Any) -> None:
    alice = await register(api)
    await sockets(alice.token, namespace=NS, transports=["websocket"])
    await sockets(alice.token, namespace=NS, transports=["polling"])
    eio = server.app[SIO].eio
    assert isinstance(eio, EngineServer)
    assert len(eio.sockets) == 2 and all(isinstance(s, EngineSocket) for s in eio.sockets.values())
    assert all(isinstance(s.queue, PacketQueue) for s in eio.sockets.values())


# the queue, on its own


async def test_packet_queue_behaves_as_engine_io_uses_asyncio_queue() -> None:
    queue = PacketQueue()
    assert queue.empty() and queue.qsize() == 0
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    waiting = queue.get()
    given_up = queue.get()
    given_up.cancel()  # a poll that timed out: the next item is not lost to it
    await queue.put("a")
    queue.put_nowait("b")
    assert await waiting == "a" and queue.qsize() == 1
    assert await asyncio.wait_for(queue.get(), 1) == "b"
    items = [f"p{i}" for i in range(300)]
    for item in items:
        queue.put_nowait(item)
    taken = [queue.get_nowait() for _ in range(200)]
    queue.put_nowait("last")
    taken += [queue.get_nowait() for _ in range(101)]
    assert taken == [*items, "last"] and queue.empty()
    joined = asyncio.ensure_future(queue.join())
    await asyncio.sleep(0)
    for _ in range(303):
        assert not joined.done()
        queue.task_done()
    await asyncio.wait_for(joined, 1)
    with pytest.raises(ValueError, match="too many times"):
        queue.task_done()


# rooms (python-socketio's bookkeeping, with plain dicts)


async def test_room_operations_behave_as_python_socketio_s(server: Server, api: Api, sockets: Any) -> None:
    alice, bob = await register(api), await register(api)
    first = await sockets(alice.token, namespace=NS)
    second = await sockets(bob.token, namespace=NS)
    await first.seen.wait_for("authenticated")
    await second.seen.wait_for("authenticated")
    sio = server.app[SIO]
    a, b = first.client.get_sid(NS), second.client.get_sid(NS)
    rooms = sio.manager.rooms[NS]
    assert all(type(members) is dict for name, members in rooms.items() if name is not None)
    assert {sid for sid, _ in sio.manager.get_participants(NS, None)} == {a, b}
    assert {sid for sid, _ in sio.manager.get_participants(NS, a)} == {a}  # each socket's own room
    await sio.enter_room(a, "both", namespace=NS)
    await sio.enter_room(b, "both", namespace=NS)
    await sio.enter_room(b, "only-b", namespace=NS)
    assert {sid for sid, _ in sio.manager.get_participants(NS, ["both", "only-b", "nobody"])} == {a, b}
    assert "both" in sio.rooms(b, namespace=NS) and "only-b" in sio.rooms(b, namespace=NS)
    with pytest.raises(ValueError, match="sid room"):
        sio.manager.basic_enter_room(a, NS, b)
    await sio.leave_room(b, "only-b", namespace=NS)
    assert "only-b" not in rooms
    await sio.close_room("both", namespace=NS)
    assert "both" not in rooms
    await sio.enter_room(a, "left-behind", namespace=NS)
    await first.client.disconnect()
    for _ in range(100):  # the server sees the disconnect: the socket leaves every room
        if a not in rooms and "left-behind" not in rooms:
            break
        await asyncio.sleep(0.05)
    assert a not in rooms and "left-behind" not in rooms
    assert {sid for sid, _ in sio.manager.get_participants(NS, None)} == {b}
