"""A lean client of the plain WebSocket at `/ws` (the Go Chat Web door) for the load-test tool.

The counterpart of `LeanSocket` (`server.loadtest.client`) for the other door: one
aiohttp WebSocket, JSON text frames parsed with orjson, requests matched to
their `ack` or `error` by `request_id`, every other frame handed to the runner
as `(type, data, time)`. No reconnection: a dropped connection is counted, not
hidden. aiohttp answers the server's protocol pings itself (`autoping`).

Frames: `{"type": "connected", "data": {user_id, timestamp}}` first, then
`{"type": "send_message", "data": {...}, "request_id": 7}` out and
`{"type": "ack", "request_id": 7, "data": <message>}` (or `error`) back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from server.loadtest.client import EventHandler, SocketClosed

ANSWERS = frozenset({"ack", "error", "pong"})


class PlainSocket:
    """One authenticated `/ws` connection; `request` returns the frame that answered it."""

    __slots__ = (
        "_answers",
        "_closing",
        "_next_id",
        "_on_event",
        "_reader",
        "_ws",
        "closed_by_server",
        "early_frames",
        "user_id",
    )

    def __init__(self, on_event: EventHandler | None = None) -> None:
        self._on_event = on_event
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self.closed_by_server = False
        self.user_id: str | None = None
        # frames that came before `connected`, which the contract says is the first: handed on all the same
        self.early_frames = 0

    async def connect(self, session: aiohttp.ClientSession, base_url: str, token: str, deflate: bool = False) -> None:
        """Open `/ws?token=` and wait for the `connected` frame.

        A refused token is an HTTP 401 before the upgrade (`aiohttp.WSServerHandshakeError`).
        Frames before `connected` (a partner's `user_status` racing it) are counted in
        `early_frames` and handed to the runner like any other, so none is lost.
        Callers bound it with `asyncio.timeout`: a server that never answers must not stall a run.
        """
        url = base_url.rstrip("/").replace("http", "ws", 1) + "/ws?" + urlencode({"token": token})
        ws = await session.ws_connect(url, compress=15 if deflate else 0, autoping=True, max_msg_size=0)
        self._ws = ws
        while True:
            message = await ws.receive()
            if message.type != aiohttp.WSMsgType.TEXT:
                raise SocketClosed(f"closed before the connected frame: {message.type.name} {ws.close_code}")
            frame = orjson.loads(message.data)
            if not isinstance(frame, dict):
                raise SocketClosed(f"a frame that is no JSON object: {message.data[:200]!r}")
            if frame.get("type") == "connected":
                break
            self.early_frames += 1
            if self._on_event is not None:
                self._on_event(str(frame.get("type")), frame.get("data"), time.monotonic())
        self.user_id = frame["data"]["user_id"]
        self._reader = asyncio.create_task(self._read())

    async def request(self, kind: str, data: Any) -> dict[str, Any]:
        """Send a frame with a `request_id`; answers the `ack`, `error` or `pong` frame for it."""
        ws = self._ws
        if ws is None or not self.connected:
            raise SocketClosed("not connected")
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[request_id] = future
        try:
            await ws.send_str(orjson.dumps({"type": kind, "data": data, "request_id": request_id}).decode())
            return await future
        finally:
            self._answers.pop(request_id, None)

    async def send_message(self, chat_id: str, content: str, client_id: str) -> str | None:
        """Send a text message and wait for its answer: None when acked, else the `error` frame's name."""
        body = {"chat_id": chat_id, "content": content, "type": "text", "client_id": client_id}
        answer = await self.request("send_message", body)
        if answer.get("type") == "ack":
            return None
        data = answer.get("data")
        return str(data.get("error") if isinstance(data, dict) else data)

    async def _read(self) -> None:
        ws = self._ws
        assert ws is not None
        on_event, answers = self._on_event, self._answers
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                frame = orjson.loads(message.data)
                kind = frame.get("type")
                request_id = frame.get("request_id")
                if request_id is not None and kind in ANSWERS:
                    future = answers.get(request_id)
                    if future is not None and not future.done():
                        future.set_result(frame)
                elif on_event is not None:
                    on_event(kind, frame.get("data"), time.monotonic())
        except (aiohttp.ClientError, ConnectionError, orjson.JSONDecodeError, AttributeError):
            pass
        finally:
            if not self._closing:
                self.closed_by_server = True
            for future in answers.values():
                if not future.done():
                    future.set_exception(SocketClosed("connection closed before the answer"))

    @property
    def connected(self) -> bool:
        """The `connected` frame came, and neither side has closed the connection since."""
        return self._reader is not None and not self._reader.done() and self._ws is not None and not self._ws.closed

    @property
    def close_code(self) -> int | None:
        """How the connection ended (4001: its login was logged out), once it has."""
        return self._ws.close_code if self._ws is not None else None

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
