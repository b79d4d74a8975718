"""A lean Socket.IO client for the load-test tool: one WebSocket, text frames only.

`socketio.AsyncClient` costs a task, an Engine.IO client and several dicts per
connection and parses every packet through generic code; thousands of them in
one process would make the load generator, not the server, the bottleneck. This
client speaks only what a WhatsChat load test needs, straight over aiohttp's
WebSocket: the Engine.IO 4 open and ping/pong, a Socket.IO 5 namespace connect
with `auth: {token}`, events with acks, and incoming events (no binary packets,
no long-polling, no reconnection; a dropped connection is counted, not hidden).

Frames (Engine.IO type, then Socket.IO type, then the namespace and an ack id):
`0{...}` open, `2`/`3` ping/pong, `40/messages,{...}` connect,
`42/messages,7["event",{...}]` event with ack id 7, `43/messages,7[{...}]` ack,
`41/messages,` disconnect, `44/messages,{...}` connect error.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
import orjson

EventHandler = Callable[[str, Any, float], None]  # (event, payload, monotonic time received)


class LoadSocket(Protocol):
    """What the runner needs of a connection, whichever door it goes through (`LeanSocket`, `PlainSocket`)."""

    closed_by_server: bool

    async def connect(
        self, session: aiohttp.ClientSession, base_url: str, token: str, deflate: bool = False
    ) -> None: ...

    async def send_message(self, chat_id: str, content: str, client_id: str) -> str | None: ...

    @property
    def connected(self) -> bool: ...

    async def close(self) -> None: ...


class SocketClosed(Exception):
    """The connection ended (or never authenticated) before an answer came."""


class LeanSocket:
    """One authenticated connection to a namespace; `emit` returns the ack's payload."""

    __slots__ = ("_acks", "_closing", "_next_id", "_on_event", "_prefix", "_reader", "_ws", "closed_by_server")

    def __init__(self, on_event: EventHandler | None = None, namespace: str = "/messages") -> None:
        self._on_event = on_event
        # the text after the packet type: "/messages," for a namespace, nothing for "/"
        self._prefix = "" if namespace == "/" else f"{namespace},"
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self.closed_by_server = False

    async def connect(self, session: aiohttp.ClientSession, base_url: str, token: str, deflate: bool = False) -> None:
        """Open the WebSocket, connect the namespace with the token and wait for `authenticated`.

        Callers bound it with `asyncio.timeout`: a server that never answers must not stall a run.
        """
        url = base_url.rstrip("/").replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        ws = await session.ws_connect(url, compress=15 if deflate else 0, autoping=True, max_msg_size=0)
        self._ws = ws
        opening = await ws.receive()
        if opening.type != aiohttp.WSMsgType.TEXT or not opening.data.startswith("0"):
            raise SocketClosed(f"no Engine.IO open packet: {opening.data!r}")
        await ws.send_str("40" + self._prefix + orjson.dumps({"token": token}).decode())
        while True:
            message = await ws.receive()
            if message.type != aiohttp.WSMsgType.TEXT:
                raise SocketClosed(f"closed while authenticating: {message.type.name}")
            frame: str = message.data
            if frame == "2":
                await ws.send_str("3")
            elif frame.startswith("44" + self._prefix):
                raise SocketClosed(f"namespace refused: {frame[2 + len(self._prefix) :]}")
            elif frame.startswith("42" + self._prefix):
                event, payload = self._event(frame)
                if event == "authenticated":
                    break
                if event == "unauthorized":
                    raise SocketClosed(f"unauthorized: {payload}")
        self._reader = asyncio.create_task(self._read())

    def _event(self, frame: str) -> tuple[str, Any]:
        """The event name and payload of a `42` frame (an ack id, if any, is skipped)."""
        body = frame[2 + len(self._prefix) :]
        start = body.find("[")
        packet = orjson.loads(body[start:])
        return packet[0], packet[1] if len(packet) > 1 else None

    async def emit(self, event: str, data: Any) -> Any:
        """Send an event asking for an ack; answers the ack's first argument."""
        ws = self._ws
        if ws is None or not self.connected:
            raise SocketClosed("not connected")
        self._next_id += 1
        ack_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = future
        try:
            await ws.send_str(f"42{self._prefix}{ack_id}" + orjson.dumps([event, data]).decode())
            return await future
        finally:
            self._acks.pop(ack_id, None)

    async def send_message(self, chat_id: str, content: str, client_id: str) -> str | None:
        """Send a message and wait for its ack: None when it was stored, else the ack's error code."""
        answer = await self.emit("send_message", {"chatId": chat_id, "content": content, "clientId": client_id})
        if isinstance(answer, dict) and answer.get("success"):
            return None
        code = answer.get("error", {}).get("code") if isinstance(answer, dict) else None
        return str(code)

    async def _read(self) -> None:
        ws = self._ws
        assert ws is not None
        event_head, ack_head, cut = "42" + self._prefix, "43" + self._prefix, 2 + len(self._prefix)
        on_event = self._on_event
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                frame: str = message.data
                if frame.startswith(event_head):
                    if on_event is not None:
                        event, payload = self._event(frame)
                        on_event(event, payload, time.monotonic())
                elif frame.startswith(ack_head):
                    start = frame.index("[", cut)
                    future = self._acks.get(int(frame[cut:start]))
                    if future is not None and not future.done():
                        future.set_result(orjson.loads(frame[start:])[0])
                elif frame == "2":
                    await ws.send_str("3")
                elif frame.startswith("41" + self._prefix) or frame == "1":
                    break
        except (aiohttp.ClientError, ConnectionError, orjson.JSONDecodeError, ValueError):
            pass
        finally:
            if not self._closing:
                self.closed_by_server = True
            for future in self._acks.values():
                if not future.done():
                    future.set_exception(SocketClosed("connection closed before the ack"))

    @property
    def connected(self) -> bool:
        """Authenticated, and neither side has closed the connection or the namespace."""
        return self._reader is not None and not self._reader.done() and self._ws is not None and not self._ws.closed

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                await self._ws.send_str("41" + self._prefix)
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
