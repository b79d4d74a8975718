"""SIGTERM and SIGINT stop the real server within a few seconds, under load, and send its clients elsewhere.

A stop closes every Socket.IO connection's transport without a goodbye: socket.io-client sees
`transport close` and stays `active` (it reconnects by itself; after `io server disconnect` it
would not), python-socketio schedules its reconnection. Events already received finish: every
acked message is in the database afterwards. With `--workers 2`, every worker is reaped (no
zombie, no orphan). The waits are bounded generously; the time each stop took is printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from tests.cluster_support import Node, server_env, tail
from tests.conftest import Account, Api, register
from tests.node_support import NODE_DIR, node_with_client
from tests.redis_support import RedisServer, free_port

WAIT_SECONDS = 30.0  # the test's bound on waiting for the exit; the stop itself takes well under a second
PAIRS = 12  # 24 sockets sending in a closed loop


@dataclass
class Load:
    """Sockets sending `send_message` in a closed loop, and what became of them when the server stopped."""

    clients: list[socketio.AsyncClient] = field(default_factory=list)
    acked: int = 0
    disconnects: list[str] = field(default_factory=list)
    chats: list[str] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, url: str, api: Api, pairs: int) -> None:
        for _ in range(pairs):
            a, b = await register(api), await register(api)
            status, body = await api.post("/chats", token=a.token, json={"type": "private", "participants": [b.id]})
            assert status in (200, 201), body
            self.chats.append(body["data"]["id"])
            for user in (a, b):
                client = await self._connect(url, user)
                self.tasks.append(asyncio.create_task(self._send(client, body["data"]["id"])))

    async def _connect(self, url: str, user: Account) -> socketio.AsyncClient:
        client = socketio.AsyncClient(reconnection=True, reconnection_delay=30)  # decides to reconnect, then waits
        authenticated = asyncio.Event()

        async def on_authenticated(_: Any) -> None:
            authenticated.set()

        async def on_disconnect(reason: Any = None) -> None:
            self.disconnects.append(str(reason))

        client.on("authenticated", on_authenticated)
        client.on("disconnect", on_disconnect)
        await client.connect(url, auth={"token": user.token}, transports=["websocket"], wait_timeout=10)
        await asyncio.wait_for(authenticated.wait(), 10)
        self.clients.append(client)
        return client

    async def _send(self, client: socketio.AsyncClient, chat_id: str) -> None:
        while client.connected:
            try:
                answer = await client.call("send_message", {"chatId": chat_id, "content": "under load"}, timeout=5)
            except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError):
                return  # the connection went while this message was on its way
            if answer.get("success"):
                self.acked += 1

    @property
    def reconnecting(self) -> int:
        """Clients whose reconnection python-socketio has started (it waits `reconnection_delay` first)."""
        return sum(client._reconnect_task is not None for client in self.clients)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for client in self.clients:
            await client.disconnect()  # also gives up a pending reconnection


async def _until(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {seconds} s")
        await asyncio.sleep(0.05)


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _stored_messages(database: Path) -> int:
    connection = sqlite3.connect(database)
    try:
        return int(connection.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
    finally:
        connection.close()


async def _stop(node: Node, signum: int) -> tuple[int | None, float]:
    """Send `signum` and wait (bounded) for the exit: its status and the seconds it took."""
    assert node.proc is not None
    began = time.monotonic()
    node.proc.send_signal(signum)
    try:
        code = await asyncio.to_thread(node.proc.wait, WAIT_SECONDS)
    except Exception:  # still running: the test fails below, and the process must not outlive it
        node.kill()
        return None, time.monotonic() - began
    return code, time.monotonic() - began


@pytest.fixture
async def api_for() -> AsyncIterator[Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield lambda url: Api(session, url + "/api/v1")


async def test_sigint_stops_one_process_and_its_clients_reconnect(tmp_path: Path, api_for: Any) -> None:
    node = Node("one", server_env(tmp_path / "data", "", free_port(), WHATSCHAT_LOGGING_LEVEL="INFO"), tmp_path / "log")
    await asyncio.to_thread(node.start)
    load = Load()
    try:
        await load.start(node.url, api_for(node.url), pairs=3)
        await _until(lambda: load.acked >= 30, 20, "30 messages acked")
        code, seconds = await _stop(node, signal.SIGINT)
        print(f"\nSIGINT, 1 process, 6 sockets sending: exit {code} after {seconds:.2f} s")
        assert code == 0, node.tail()
        await _until(lambda: load.reconnecting == 6, 10, "every socket reconnecting")
        assert len(load.disconnects) == 6, load.disconnects
    finally:
        await load.close()
        node.stop()
    log = tail(node.log, 100_000)
    assert "Traceback" not in log and "WhatsChat listening on" in log, log
    assert log.index("WhatsChat listening on") < log.index("signal 2 received"), log
    assert _stored_messages(tmp_path / "data" / "whatschat.db") >= load.acked


@pytest.mark.redis
@pytest.mark.node
async def test_sigterm_under_load_stops_two_workers_and_sends_clients_elsewhere(tmp_path: Path, api_for: Any) -> None:
    node_binary = node_with_client()
    redis = RedisServer(log=tmp_path / "redis.log")
    await asyncio.to_thread(redis.start)
    env = server_env(tmp_path / "data", redis.url, free_port(), WHATSCHAT_LOGGING_LEVEL="INFO")
    group = Node("group", env, tmp_path / "server.log", ("--workers", "2"))
    load = Load()
    watcher: asyncio.subprocess.Process | None = None
    try:
        await asyncio.to_thread(group.start)
        assert group.proc is not None
        workers = _children(group.proc.pid)
        assert len(workers) == 2, workers
        api = api_for(group.url)
        await load.start(group.url, api, pairs=PAIRS)
        node_user = await register(api)
        watcher = await asyncio.create_subprocess_exec(
            node_binary, str(NODE_DIR / "reconnect.mjs"), group.url, node_user.token,
            cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert watcher.stdout is not None
        ready = await asyncio.wait_for(watcher.stdout.readline(), 20)
        assert ready.decode().strip() == "ready", ready
        await _until(lambda: load.acked >= 200, 30, "200 messages acked")

        code, seconds = await _stop(group, signal.SIGTERM)
        print(f"\nSIGTERM, 2 workers on Redis, {2 * PAIRS} sockets sending: exit {code} after {seconds:.2f} s")
        assert code == 0, group.tail()
        left = [pid for pid in workers if os.path.lexists(f"/proc/{pid}")]  # noqa: ASYNC240 (a zombie has one)
        assert left == [], f"workers {left} not reaped\n{group.tail()}"

        await _until(lambda: load.reconnecting == 2 * PAIRS, 10, "every Python socket reconnecting")
        assert len(load.disconnects) == 2 * PAIRS, load.disconnects
        report = json.loads((await asyncio.wait_for(watcher.stdout.readline(), 10)).decode())
        assert report == {"reason": "transport close", "active": True}, report
    finally:
        if watcher is not None and watcher.returncode is None:
            watcher.kill()
            await watcher.wait()
        await load.close()
        group.stop()
        redis.stop()
    log = tail(group.log, 200_000)
    assert "Traceback" not in log and "signal 15: every worker stopped" in log, log
    stored = _stored_messages(tmp_path / "data" / "whatschat.db")
    print(f"acked {load.acked}, stored {stored}")
    assert stored >= load.acked, "an acked message is in the database"
