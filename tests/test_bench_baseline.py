"""The bare python-socketio server `make bench` compares WhatsChat with speaks WhatsChat's wire shapes.

It runs on a loopback port and is driven by the clients the benchmark's load
test resembles: REST for accounts and chats, `socketio.AsyncClient` for
messages. Whether a socket did not get an event is decided by content, never by
waiting: the sender's socket is asked to receive a later reply, and everything
the server sent it before that reply has arrived by then.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp import web

from bench.baseline import MAX_PAYLOAD, PING_INTERVAL, PING_TIMEOUT, create_app
from server.config import load_config

_names = count(1)


@dataclass
class Baseline:
    url: str
    http: aiohttp.ClientSession
    clients: list[socketio.AsyncClient] = field(default_factory=list)

    async def post(self, path: str, body: dict[str, Any], token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.post(f"{self.url}/api/v1{path}", json=body, headers=headers) as response:
            return response.status, await response.json()

    async def register(self) -> dict[str, Any]:
        name = f"bench{next(_names)}"
        body = {"username": name, "email": f"{name}@example.com", "password": "Passw0rd!"}
        status, answer = await self.post("/auth/register", body)
        assert status == 201, answer
        assert answer["success"] is True
        return answer["data"]


@dataclass
class Socket:
    client: socketio.AsyncClient
    namespace: str
    events: dict[str, list[Any]]
    arrived: asyncio.Condition

    async def send(self, chat_id: str, content: str) -> Any:
        payload = {"chatId": chat_id, "content": content, "clientId": f"c-{content}"}
        return await self.client.call("send_message", payload, namespace=self.namespace, timeout=5)

    async def wait_for(self, event: str, number: int = 1) -> list[Any]:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.events.get(event, [])) >= number), 5)
        return self.events[event]


@pytest.fixture
async def baseline() -> AsyncIterator[Baseline]:
    runner = web.AppRunner(create_app(), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as http:
        server = Baseline(f"http://127.0.0.1:{port}", http)
        yield server
        for client in server.clients:
            if client.connected:
                await client.disconnect()
    await runner.cleanup()


@pytest.fixture
def connect(baseline: Baseline) -> Callable[..., Awaitable[Socket]]:
    async def connect(token: str, namespace: str = "/messages") -> Socket:
        client = socketio.AsyncClient(reconnection=False)
        events: dict[str, list[Any]] = {}
        arrived = asyncio.Condition()

        def recorder(name: str) -> Callable[[Any], Awaitable[None]]:
            async def record(data: Any) -> None:
                async with arrived:
                    events.setdefault(name, []).append(data)
                    arrived.notify_all()

            return record

        for name in ("authenticated", "new_message"):
            client.on(name, recorder(name), namespace=namespace)
        baseline.clients.append(client)
        await client.connect(
            baseline.url, namespaces=[namespace], auth={"token": token}, transports=["websocket"], wait_timeout=5
        )
        return Socket(client, namespace, events, arrived)

    return connect


def check_message(message: dict[str, Any], chat_id: str, sender: dict[str, Any], content: str) -> None:
    assert set(message) == {
        "id", "chatId", "senderId", "sender", "content", "type", "metadata", "replyTo", "clientId",
        "status", "editedAt", "deleted", "createdAt", "updatedAt",
    }  # fmt: skip
    assert len(message["id"]) == 24 and int(message["id"], 16) >= 0
    assert message["chatId"] == chat_id
    assert message["senderId"] == sender["id"]
    assert message["sender"] == {"id": sender["id"], "username": sender["username"], "avatar": None}
    assert message["content"] == content
    assert message["clientId"] == f"c-{content}"
    assert (message["type"], message["status"], message["deleted"]) == ("text", "sent", False)
    assert message["metadata"] is message["replyTo"] is message["editedAt"] is None


async def test_health_and_accounts(baseline: Baseline) -> None:
    async with baseline.http.get(f"{baseline.url}/api/v1/health") as response:
        assert response.status == 200
        assert await response.json() == {"success": True, "data": {"status": "ok"}}
    alice = await baseline.register()
    assert len(alice["user"]["id"]) == 24 and alice["user"]["avatar"] is None
    assert alice["token"] and alice["refreshToken"]
    status, login = await baseline.post("/auth/login", {"email": alice["user"]["email"], "password": "Passw0rd!"})
    assert status == 200 and login["data"]["user"] == alice["user"]
    assert login["data"]["token"] != alice["token"]
    status, wrong = await baseline.post("/auth/login", {"email": alice["user"]["email"], "password": "nope"})
    assert status == 401 and wrong["success"] is False


async def test_private_chat_reaches_the_other_member_not_the_sending_socket(
    baseline: Baseline, connect: Callable[..., Awaitable[Socket]]
) -> None:
    alice, bob = await baseline.register(), await baseline.register()
    status, chat = await baseline.post(
        "/chats", {"type": "private", "participants": [bob["user"]["id"]]}, alice["token"]
    )
    assert status == 201 and chat["success"] is True
    chat_id = chat["data"]["id"]
    assert chat["data"]["type"] == "private"
    assert {p["id"] for p in chat["data"]["participants"]} == {alice["user"]["id"], bob["user"]["id"]}

    a, b = await connect(alice["token"]), await connect(bob["token"])
    assert (await a.wait_for("authenticated"))[0]["user"]["id"] == alice["user"]["id"]
    assert (await b.wait_for("authenticated"))[0]["user"]["id"] == bob["user"]["id"]

    ack = await a.send(chat_id, "hello bob")
    assert ack["success"] is True
    check_message(ack["data"], chat_id, alice["user"], "hello bob")
    [received] = await b.wait_for("new_message")
    assert received == ack["data"]

    reply = await b.send(chat_id, "hi alice")
    assert reply["success"] is True
    # Alice's socket gets Bob's reply, and nothing before it: her own message never came back.
    [only] = await a.wait_for("new_message")
    check_message(only, chat_id, bob["user"], "hi alice")
    assert b.events["new_message"] == [ack["data"]]


async def test_group_created_while_connected_reaches_the_others(
    baseline: Baseline, connect: Callable[..., Awaitable[Socket]]
) -> None:
    alice, bob, carol = [await baseline.register() for _ in range(3)]
    a, b = await connect(alice["token"]), await connect(bob["token"])
    c = await connect(carol["token"], namespace="/")
    status, group = await baseline.post(
        "/groups", {"name": "trio", "participants": [bob["user"]["id"], carol["user"]["id"]]}, alice["token"]
    )
    assert status == 201 and group["data"]["type"] == "group"
    assert len(group["data"]["participants"]) == 3
    group_id = group["data"]["id"]

    ack = await a.send(group_id, "hello both")
    assert ack["success"] is True
    check_message(ack["data"], group_id, alice["user"], "hello both")
    assert await b.wait_for("new_message") == [ack["data"]]
    assert await c.wait_for("new_message") == [ack["data"]]

    await c.send(group_id, "hi from carol")
    [only] = await a.wait_for("new_message")
    check_message(only, group_id, carol["user"], "hi from carol")


async def test_outsiders_and_unknown_tokens_are_refused(
    baseline: Baseline, connect: Callable[..., Awaitable[Socket]]
) -> None:
    alice, bob, eve = [await baseline.register() for _ in range(3)]
    _, chat = await baseline.post("/chats", {"type": "private", "participants": [bob["user"]["id"]]}, alice["token"])
    intruder = await connect(eve["token"])
    assert await intruder.send(chat["data"]["id"], "let me in") == {
        "success": False,
        "error": {"code": "MSG_002", "message": "Chat not found"},
    }
    assert await intruder.send("0" * 24, "nowhere") == await intruder.send(chat["data"]["id"], "again")
    status, _ = await baseline.post("/chats", {"type": "private", "participants": [bob["user"]["id"]]}, "forged")
    assert status == 401
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect("forged")


def test_engineio_settings_are_whatschats_defaults() -> None:
    settings = load_config(None, {}).socketio
    assert (
        settings.ping_interval,
        settings.ping_timeout,
        settings.max_payload,
    ) == (PING_INTERVAL, PING_TIMEOUT, MAX_PAYLOAD)
    assert settings.cors_origins == ["*"]
