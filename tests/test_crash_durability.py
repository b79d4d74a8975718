"""An acknowledged message survives SIGKILL: the ack promises the row is committed.

The real server runs as a separate process (`python -m server serve`, configured through
`WHATSCHAT_*` variables). Several Socket.IO senders, each with a few sends in flight, send with
acks; once enough acks have arrived the process is killed with SIGKILL mid-stream. A new process
on the same data folder must then list, in `GET /messages/:chatId`, every message id that any
sender was acknowledged, and nothing no sender tried to send.

Every loop is bounded in count and time; nothing asserts on how fast anything was.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from tests.conftest import Account, Api, register
from tests.redis_support import free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "crash-durability-test-secret-0123456789abcdef"
USERS = 4
SOCKETS_PER_USER = 2
IN_FLIGHT = 4  # concurrent send loops per socket
KILL_AFTER = 1500  # acks in total before the SIGKILL
MAX_ATTEMPTS = 20000  # hard cap on sends, whatever happens


@dataclass
class ServerProcess:
    data_dir: Path
    log: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""

    async def start(self) -> str:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WHATSCHAT_")}
        env.update(
            WHATSCHAT_DATA_DIR=str(self.data_dir),
            WHATSCHAT_SERVER_HOST="127.0.0.1",
            WHATSCHAT_SERVER_PORT=str(port),
            WHATSCHAT_AUTH_BCRYPT_ROUNDS="4",
            WHATSCHAT_AUTH_JWT_SECRET=SECRET,
            WHATSCHAT_LOGGING_LEVEL="WARNING",
            WHATSCHAT_LIMITS_MESSAGES_PER_SECOND="100000",
            WHATSCHAT_LIMITS_MESSAGES_BURST="100000",
        )
        self.proc = self._spawn(env)
        self.processes.append(self.proc)
        self.url = f"http://127.0.0.1:{port}"
        await self._wait_healthy()
        return self.url

    def _spawn(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Fork and exec only: it returns at once, the wait for readiness is `_wait_healthy`."""
        with open(self.log, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "server", "serve"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    async def _wait_healthy(self) -> None:
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for _ in range(300):  # at most ~30 s
                if self.proc is not None and self.proc.poll() is not None:
                    break
                try:
                    async with session.get(self.url + "/api/v1/health") as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        pytest.fail(f"the server did not become healthy; its log:\n{self.log_tail()}")

    async def kill(self) -> int:
        """SIGKILL, then reap (bounded)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        for _ in range(200):
            code = self.proc.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.05)
        pytest.fail("the server survived SIGKILL for 10 s")

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def cleanup(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):  # a kernel problem, not ours
                proc.wait(timeout=10)


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log")
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        yield http


async def history(api: Api, token: str, chat_id: str, expected_at_most: int) -> dict[str, str]:
    """Every message of a chat as {id: clientId}, paging from the newest with `before` cursors."""
    ids: dict[str, str] = {}
    before: str | None = None
    for _ in range(expected_at_most // 100 + 3):
        query = f"?limit=100&before={before}" if before else "?limit=100"
        status, body = await api.get(f"/messages/{chat_id}{query}", token=token)
        assert status == 200, body
        page = body["data"]["messages"]
        for message in page:
            assert message["id"] not in ids, f"history repeats {message['id']}"
            ids[message["id"]] = message["clientId"]
        if len(page) < 100:
            return ids
        before = page[-1]["id"]
    pytest.fail(f"history of {chat_id} did not end within the expected number of pages")


async def test_acknowledged_messages_survive_sigkill(
    server_process: ServerProcess, session: aiohttp.ClientSession
) -> None:
    url = await server_process.start()
    api = Api(session, url + "/api/v1")
    users: list[Account] = [await register(api) for _ in range(USERS)]
    owner = users[0]
    status, body = await api.post(
        "/groups", json={"name": "durable", "participants": [u.id for u in users[1:]]}, token=owner.token
    )
    assert status == 201, body
    chats = [body["data"]["id"]]
    for other in users[1:]:  # a private chat between the owner and each other user
        status, body = await api.post("/chats", json={"type": "private", "participants": [other.id]}, token=owner.token)
        assert status == 201, body
        chats.append(body["data"]["id"])
    chats_of = {u.id: [chats[0]] + ([chats[users.index(u)]] if u is not owner else chats[1:]) for u in users}

    clients: list[socketio.AsyncClient] = []
    for user in users:
        for _ in range(SOCKETS_PER_USER):
            client = socketio.AsyncClient(reconnection=False)
            await client.connect(url, auth={"token": user.token}, transports=["websocket"], wait_timeout=5)
            clients.append(client)

    attempted: set[str] = set()  # client ids of every send tried
    acked: dict[str, str] = {}  # message id -> client id, for every ack received
    refused: list[Any] = []
    enough = asyncio.Event()

    async def sender(client: socketio.AsyncClient, user: Account, lane: str) -> None:
        for n in range(MAX_ATTEMPTS):
            if len(attempted) >= MAX_ATTEMPTS:
                return
            client_id = f"{lane}-{n}"
            attempted.add(client_id)
            chat_id = chats_of[user.id][n % len(chats_of[user.id])]
            payload = {"chatId": chat_id, "content": f"durable {client_id}", "clientId": client_id}
            try:
                answer = await client.call("send_message", payload, timeout=5)
            except (TimeoutError, socketio.exceptions.SocketIOError):
                return  # the server is gone
            if not answer.get("success"):
                refused.append(answer)
                return
            acked[answer["data"]["id"]] = client_id
            if len(acked) >= KILL_AFTER:
                enough.set()

    tasks = [
        asyncio.create_task(sender(client, users[i // SOCKETS_PER_USER], f"s{i}l{lane}"))
        for i, client in enumerate(clients)
        for lane in range(IN_FLIGHT)
    ]
    try:
        try:
            await asyncio.wait_for(enough.wait(), 30)
        except TimeoutError:
            pytest.fail(f"only {len(acked)} acks in 30 s ({refused[:1]}); server log:\n{server_process.log_tail()}")
        acked_at_kill = len(acked)
        exit_code = await server_process.kill()
        # acks already on the wire may still arrive (each was sent by the server, so it counts) until
        # every client has seen its connection end
        for _ in range(200):
            if not any(client.connected for client in clients):
                break
            await asyncio.sleep(0.05)
        await asyncio.wait(tasks, timeout=0.5)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.disconnect()
    assert exit_code == -signal.SIGKILL
    assert not refused, refused[:3]

    url = await server_process.start()  # a new process on the same data folder, on a new port
    api = Api(session, url + "/api/v1")
    found: dict[str, str] = {}  # message id -> client id, over every chat
    for chat_id in chats:
        found.update(await history(api, owner.token, chat_id, len(attempted)))

    missing = sorted(set(acked) - set(found))
    print(
        f"\ncrash durability: sent attempts {len(attempted)}, acked {len(acked)} ({acked_at_kill} when SIGKILL was"
        f" sent), found after restart {len(found)} (acked and found {len(set(acked) & set(found))},"
        f" stored but never acked {len(set(found) - set(acked))}), missing {len(missing)}"
    )
    assert len(acked) >= KILL_AFTER
    assert not missing, f"{len(missing)} acknowledged messages lost in the crash, e.g. {missing[:5]}"
    assert len(found) <= len(attempted)
    assert set(found.values()) <= attempted, "the store holds a message nobody sent"
    assert all(found[m] == c for m, c in acked.items()), "an acknowledged id holds another message"
