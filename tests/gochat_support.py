"""Clients of the Go Chat Web door for tests: its REST API under `/api` and its WebSocket at `/ws`."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.conftest import Api

_numbers = itertools.count(1)
# a message's fields as the door writes it (`client_id` besides, the sender's own key)
GO_MESSAGE_KEYS = {
    "message_id",
    "chat_id",
    "sender_id",
    "sender_name",
    "sender_avatar",
    "content",
    "type",
    "status",
    "reply_to",
    "edited_at",
    "created_at",
}


@dataclass
class GoApi(Api):
    """`Api` against the door: `base` is the server's URL, paths are under `/api` (`go.post("/auth/login")`)."""

    async def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        return await super().call(method, f"/api{path}", token, **kwargs)


@dataclass
class GoUser:
    id: str
    name: str
    email: str
    password: str
    token: str
    refresh_token: str


async def go_register(go: GoApi, name: str | None = None, password: str = "Passw0rd") -> GoUser:
    """A user registered and logged in through `/api`."""
    n = next(_numbers)
    name = name or f"User {n}"
    email = f"go{n}-{id(go) % 10_000}@example.com"
    status, body = await go.post("/auth/register", json={"name": name, "email": email, "password": password})
    assert status == 201, body
    status, body = await go.post("/auth/login", json={"email": email, "password": password})
    assert status == 200, body
    data = body["data"]
    return GoUser(data["user"]["user_id"], name, email, password, data["access_token"], data["refresh_token"])


@dataclass
class WsClient:
    """A `/ws` connection that records every frame it receives."""

    ws: aiohttp.ClientWebSocketResponse
    frames: list[dict[str, Any]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def start(self) -> None:
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(msg.json())
                self._arrived.set()
        self.closed.set()
        self._arrived.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f["data"] for f in self.frames if f.get("type") == kind]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]]:
            while len(self.of(kind)) < count:
                self._arrived.clear()
                if self.closed.is_set():
                    raise AssertionError(f"closed while waiting for {kind}: {self.frames}")
                await self._arrived.wait()
            return self.of(kind)

        return await asyncio.wait_for(enough(), timeout)

    async def request(self, kind: str, data: Any = None, timeout: float = 5.0) -> dict[str, Any]:
        """Send a frame with a `request_id`; answer the `ack` or `error` frame for it."""
        rid = f"r{next(self._ids)}"
        frame: dict[str, Any] = {"type": kind, "request_id": rid}
        if data is not None:
            frame["data"] = data
        await self.ws.send_json(frame)

        async def answered() -> dict[str, Any]:
            while True:
                for f in self.frames:
                    if f.get("request_id") == rid and f.get("type") in ("ack", "error", "pong"):
                        return f
                self._arrived.clear()
                if self.closed.is_set():
                    raise AssertionError(f"closed before answering {kind}: {self.frames}")
                await self._arrived.wait()

        return await asyncio.wait_for(answered(), timeout)

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


@asynccontextmanager
async def ws_connect(session: aiohttp.ClientSession, base: str, token: str) -> AsyncIterator[WsClient]:
    """A connected `/ws` client whose `connected` frame has arrived."""
    ws = await session.ws_connect(f"{base}/ws?token={token}", autoping=True)
    client = WsClient(ws)
    client.start()
    try:
        await client.wait_for("connected")
        yield client
    finally:
        await client.close()


# added for tests/test_gochat_ws.py and tests/test_gochat_cluster.py -------------------------------------------------


async def ws_open(
    session: aiohttp.ClientSession, base: str, token: str, *, header: bool = False, compress: int = 15
) -> WsClient:
    """A started `/ws` client whose `connected` frame has arrived; the caller closes it.

    The token goes in `?token=`, or in an `Authorization: Bearer` header with `header=True`;
    `compress=0` turns permessage-deflate off (aiohttp offers it by default).
    """
    if header:
        ws = await session.ws_connect(f"{base}/ws", headers={"Authorization": f"Bearer {token}"}, compress=compress)
    else:
        ws = await session.ws_connect(f"{base}/ws?token={token}", compress=compress)
    client = WsClient(ws)
    client.start()
    try:
        await client.wait_for("connected")
    except BaseException:
        await client.close()
        raise
    return client


async def pong(client: WsClient) -> None:
    """A barrier: a `ping` answered `pong`, so every frame queued for `client` before it has arrived."""
    answer = await client.request("ping")
    assert answer["type"] == "pong", answer


async def wait_closed(client: WsClient, timeout: float = 5.0) -> int | None:
    """Wait until the server closes `client`; its close code."""
    await asyncio.wait_for(client.closed.wait(), timeout)
    return client.ws.close_code


async def go_private(go: GoApi, user: GoUser, other_id: str) -> str:
    """The id of a new private chat of `user` with `other_id`, opened through `/api`."""
    status, body = await go.post("/chats/private", token=user.token, json={"participant_id": other_id})
    assert status == 201, body
    return str(body["data"]["chat_id"])


async def go_group(go: GoApi, owner: GoUser, member_ids: list[str], name: str = "crew") -> str:
    """The id of a new group of `owner` with `member_ids`, made through `/api`."""
    status, body = await go.post("/groups", token=owner.token, json={"name": name, "member_ids": member_ids})
    assert status == 201, body
    return str(body["data"]["chat_id"])


async def go_send(go: GoApi, user: GoUser, chat_id: str, content: str = "hi", **extra: Any) -> dict[str, Any]:
    """A message sent through `POST /api/chats/{chat_id}/messages`: the stored message."""
    status, body = await go.post(
        f"/chats/{chat_id}/messages", token=user.token, json={"content": content, "type": "text", **extra}
    )
    assert status == 201, body
    data: dict[str, Any] = body["data"]
    return data
