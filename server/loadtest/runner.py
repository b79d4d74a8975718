"""One load-test run: connect every user's socket, send for a while, count what came back.

Sending is either closed-loop (each socket sends, waits for the ack, sends
again) or paced at a fixed aggregate rate spread round-robin over the sockets.
Only sends started inside the measured window (after the warm-up) count. Every
message carries a unique `clientId`, so each `new_message` is matched to its send
for the end-to-end latency, and deliveries are checked per message: each acked
message must reach every other member's socket exactly once. Every loop is
bounded by time (and sends by `max_messages`), so a run ends even when the
server stops answering.

The sockets go through one of the server's doors (`Options.door`): Socket.IO
(`LeanSocket`) or the plain WebSocket at `/ws` (`PlainSocket`), which names the
id `client_id` and also hands each message back to its sender's connection; that
echo is checked too (exactly once per acked message) but is not a delivery.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from server.loadtest.client import EventHandler, LeanSocket, LoadSocket, SocketClosed
from server.loadtest.population import Population, populate
from server.loadtest.stats import Summary
from server.loadtest.wsclient import PlainSocket

DOORS = ("socketio", "ws")  # Socket.IO on `namespace`, or the plain WebSocket at `/ws`


@dataclass(frozen=True, slots=True)
class Options:
    url: str
    also_urls: tuple[str, ...] = ()  # more processes of the deployment: socket i goes to the i-th URL, round-robin
    users: int = 200
    group_size: int = 2
    duration: float = 20.0
    warmup: float = 3.0
    rate: float | None = None  # aggregate sends per second; None: closed loop
    idle: bool = False  # connect and hold the sockets for `duration`, sending nothing
    deflate: bool = False  # offer permessage-deflate, as browsers do
    namespace: str = "/messages"  # Socket.IO only
    door: str = "socketio"  # one of DOORS
    content_size: int = 64
    ack_timeout: float = 10.0
    drain: float = 5.0  # how long to wait for deliveries after the last send
    connect_concurrency: int = 100
    max_outstanding: int = 100  # per socket when paced: sends beyond it are skipped and counted
    max_messages: int = 5_000_000
    server_pid: int | None = None  # on the same machine: report the server's memory per connection
    progress: bool = True


@dataclass(slots=True)
class _Sent:
    at: float
    chat: int
    sender: int
    recorded: bool
    acked: bool = False
    delivered: int = 0
    echoed: int = 0  # copies handed back to the sender's own connection (`/ws` only)


@dataclass
class Result:
    """What a run measured; `as_dict` is the JSON line."""

    options: Options
    tag: str = ""
    connected: int = 0
    connect: Summary = Summary(0, 0, 0, 0, 0)
    window: float = 0.0
    sent: int = 0
    acked: int = 0
    sent_all: int = 0  # warm-up included: what the server should have stored
    acked_all: int = 0
    delivered: int = 0
    delivered_all: int = 0
    expected: int = 0
    echoed: int = 0  # `/ws`: acked messages handed back to their sender's connection (warm-up included)
    early_frames: int = 0  # `/ws`: frames that came before `connected` (the contract says it comes first)
    ack: Summary = Summary(0, 0, 0, 0, 0)
    end_to_end: Summary = Summary(0, 0, 0, 0, 0)
    errors: Counter[str] = field(default_factory=Counter)
    memory: dict[str, float] = field(default_factory=dict)
    load_cpu: float = 0.0  # share of one core this process used while sending: near 1.0, it was the bottleneck

    def per_second(self, count: int) -> float:
        return round(count / self.window, 1) if self.window else 0.0

    def as_dict(self) -> dict[str, Any]:
        o = self.options
        return {
            "mode": "idle" if o.idle else ("rate" if o.rate else "closed-loop"),
            "door": o.door,
            "url": o.url,
            "tag": self.tag,
            "users": o.users,
            "groupSize": o.group_size,
            "rate": o.rate,
            "deflate": o.deflate,
            "duration": round(self.window, 3),
            "connected": self.connected,
            "connectMs": self.connect.as_dict(),
            "sent": self.sent,
            "acked": self.acked,
            "sentIncludingWarmup": self.sent_all,
            "ackedIncludingWarmup": self.acked_all,
            "deliveredIncludingWarmup": self.delivered_all,
            "delivered": self.delivered,
            "expectedDeliveries": self.expected,
            "echoed": self.echoed,
            "framesBeforeConnected": self.early_frames,
            "sentPerSecond": self.per_second(self.sent),
            "ackedPerSecond": self.per_second(self.acked),
            "deliveredPerSecond": self.per_second(self.delivered),
            "ackMs": self.ack.as_dict(),
            "endToEndMs": self.end_to_end.as_dict(),
            "errors": dict(sorted(self.errors.items())),
            "serverMemory": self.memory,
            "loadGeneratorCpu": round(self.load_cpu, 3),
        }


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """Resident memory of a process on this machine (`VmHWM`: its peak), from /proc; `OSError` if there is none."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise OSError(f"process {pid} reports no {field} in /proc/{pid}/status")


class LoadTest:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.result = Result(options)
        self.sockets: list[LoadSocket] = []
        self.population: Population | None = None
        self._sent: dict[str, _Sent] = {}
        self._seen: list[set[str]] = []
        self._e2e: list[float] = []
        self._ack: list[float] = []
        self._outstanding: list[int] = []
        self._issued = 0
        self._start = self._stop = 0.0
        self._phase = "setting up"
        self._content = "x" * max(1, options.content_size)
        if options.door not in DOORS:
            raise ValueError(f"door {options.door!r} is none of {', '.join(DOORS)}")
        self._echoes = options.door == "ws"  # `/ws` hands every message back to its sender's connection

    async def run(self) -> Result:
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            self.population = await populate(session, self.o.url, self.o.users, self.o.group_size)
            self.result.tag = self.population.tag
            reporter = asyncio.create_task(self._report_progress()) if self.o.progress else None
            try:
                before = rss_kib(self.o.server_pid) if self.o.server_pid else None
                await self._connect_all(session)
                if self.o.idle:
                    await self._hold(before)
                else:
                    await self._send_all()
                    self._read_memory(before)
            finally:
                self._phase = "closing"
                if reporter is not None:
                    reporter.cancel()
                for sock in self.sockets:
                    if sock.closed_by_server:
                        self.result.errors["disconnects"] += 1
                await asyncio.gather(*(sock.close() for sock in self.sockets), return_exceptions=True)
        return self.result

    # connecting
    async def _connect_all(self, session: aiohttp.ClientSession) -> None:
        assert self.population is not None
        self._phase = "connecting"
        gate = asyncio.Semaphore(self.o.connect_concurrency)
        urls = (self.o.url, *self.o.also_urls)  # members of a chat are consecutive: they land on different processes
        times: list[float] = []
        self._seen = [set() for _ in self.population.users]
        self._outstanding = [0] * len(self.population.users)

        async def connect(index: int, token: str) -> LoadSocket:
            sock = self._socket(index)
            async with gate:
                began = time.monotonic()
                try:
                    async with asyncio.timeout(30.0):
                        await sock.connect(session, urls[index % len(urls)], token, deflate=self.o.deflate)
                except (SocketClosed, aiohttp.ClientError, OSError, TimeoutError) as exc:
                    self.result.errors[f"connect failed: {type(exc).__name__}"] += 1
                    return sock
                times.append(time.monotonic() - began)
            return sock

        self.sockets = list(await asyncio.gather(*(connect(m.index, m.token) for m in self.population.users)))
        self.result.connected = sum(sock.connected for sock in self.sockets)
        self.result.early_frames = sum(getattr(sock, "early_frames", 0) for sock in self.sockets)
        self.result.connect = Summary.of(times)

    def _socket(self, index: int) -> LoadSocket:
        if self.o.door == "ws":
            return PlainSocket(self._receiver(index))
        return LeanSocket(self._receiver(index), self.o.namespace)

    async def _hold(self, rss_before: int | None) -> None:
        self._phase = "holding"
        await asyncio.sleep(min(2.0, self.o.duration))  # let the server settle before reading its memory
        self._read_memory(rss_before)
        self._start = time.monotonic()
        await asyncio.sleep(max(0.0, self.o.duration - 2.0))
        self._stop = time.monotonic()
        self.result.window = self._stop - self._start + min(2.0, self.o.duration)
        still = sum(sock.connected for sock in self.sockets)
        if still < self.result.connected:
            self.result.errors["disconnects while idle"] += self.result.connected - still

    def _read_memory(self, rss_before: int | None) -> None:
        """The server's memory now (sockets still open) against before they connected, with `--server-pid`."""
        pid = self.o.server_pid
        if not pid or rss_before is None:
            return
        try:
            after, peak = rss_kib(pid), rss_kib(pid, "VmHWM")
        except OSError as exc:  # the server went away during the run
            self.result.errors[f"server memory unreadable: {type(exc).__name__}"] += 1
            return
        per_connection = (after - rss_before) / self.result.connected if self.result.connected else 0.0
        self.result.memory = {
            "rssBeforeKiB": rss_before,
            "rssAfterKiB": after,
            "rssPeakKiB": peak,
            "perConnectionKiB": round(per_connection, 2),
        }

    # receiving
    def _receiver(self, index: int) -> EventHandler:
        assert self.population is not None
        my_chat = self.population.users[index].chat
        seen = self._seen[index]
        sent = self._sent
        result = self.result
        latencies = self._e2e
        echoes = self._echoes
        id_key = "client_id" if echoes else "clientId"

        def on_event(event: str, payload: Any, at: float) -> None:
            if event != "new_message":
                if event == "error" and echoes:  # `/ws` answers a failure without a request_id this way
                    name = payload.get("error") if isinstance(payload, dict) else payload
                    result.errors[f"error frames: {name}"] += 1
                return
            client_id = payload.get(id_key) if isinstance(payload, dict) else None
            if not isinstance(client_id, str) or (record := sent.get(client_id)) is None:
                result.errors["unknown deliveries"] += 1
                return
            if record.chat != my_chat:
                result.errors["deliveries to a non-member"] += 1
                return
            if echoes and record.sender == index:
                record.echoed += 1
                if record.echoed > 1:
                    result.errors["duplicate echoes"] += 1
                else:
                    result.echoed += 1
                return
            if client_id in seen:
                result.errors["duplicate deliveries"] += 1
                return
            seen.add(client_id)
            record.delivered += 1
            result.delivered_all += 1
            if record.recorded:
                result.delivered += 1
                latencies.append(at - record.at)

        return on_event

    # sending
    async def _send_all(self) -> None:
        now = time.monotonic()
        cpu = time.process_time()
        self._start = now + self.o.warmup
        self._stop = self._start + self.o.duration
        self._phase = "sending"
        if self.o.rate:
            await self._paced(self.o.rate)
        else:
            await asyncio.gather(*(self._closed_loop(i) for i in range(len(self.sockets))))
        await self._drain()
        result = self.result
        result.load_cpu = (time.process_time() - cpu) / max(1e-9, time.monotonic() - now)
        result.window = self.o.duration
        result.ack = Summary.of(self._ack)
        result.end_to_end = Summary.of(self._e2e)
        acked = [r for r in self._sent.values() if r.recorded and r.acked]
        result.expected = len(acked) * (self.o.group_size - 1)
        missing = sum(max(0, self.o.group_size - 1 - r.delivered) for r in acked)
        if missing:
            result.errors["missing deliveries"] += missing
        unechoed = sum(not r.echoed for r in self._sent.values() if r.acked) if self._echoes else 0
        if unechoed:
            result.errors["missing echoes"] += unechoed

    async def _send_one(self, index: int) -> None:
        assert self.population is not None
        member = self.population.users[index]
        self._issued += 1
        client_id = f"{self.population.tag}-{index}-{self._issued}"
        began = time.monotonic()
        recorded = self._start <= began < self._stop
        record = _Sent(began, member.chat, index, recorded)
        self._sent[client_id] = record
        self.result.sent_all += 1
        if recorded:
            self.result.sent += 1
        chat_id = self.population.chat_ids[member.chat]
        self._outstanding[index] += 1
        try:
            async with asyncio.timeout(self.o.ack_timeout):
                failure = await self.sockets[index].send_message(chat_id, self._content, client_id)
        except TimeoutError:
            self.result.errors["late acks"] += 1
            return
        except SocketClosed:
            self.result.errors["acks lost to a closed socket"] += 1
            return
        finally:
            self._outstanding[index] -= 1
        if failure is None:
            record.acked = True
            self.result.acked_all += 1
            if recorded:
                self.result.acked += 1
                self._ack.append(time.monotonic() - began)
        else:
            self.result.errors[f"failed acks: {failure}"] += 1

    async def _closed_loop(self, index: int) -> None:
        sock = self.sockets[index]
        while time.monotonic() < self._stop and sock.connected and self._issued < self.o.max_messages:
            await self._send_one(index)

    async def _paced(self, rate: float) -> None:
        began = time.monotonic()
        issued = 0
        turn = 0
        count = len(self.sockets)
        tasks: set[asyncio.Task[None]] = set()
        while (now := time.monotonic()) < self._stop and self._issued < self.o.max_messages:
            for _ in range(int((now - began) * rate) - issued):
                issued += 1
                turn = (turn + 1) % count
                if not self.sockets[turn].connected:
                    self.result.errors["sends skipped: socket closed"] += 1
                elif self._outstanding[turn] >= self.o.max_outstanding:
                    self.result.errors["sends skipped: too many awaiting acks"] += 1
                else:
                    task = asyncio.create_task(self._send_one(turn))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            await asyncio.sleep(0.002)
        if tasks:  # each is bounded by the ack timeout
            await asyncio.gather(*tasks)

    async def _drain(self) -> None:
        """Wait (bounded) until every acked message reached all its recipients."""
        self._phase = "draining"
        wanted = self.o.group_size - 1
        echoes = int(self._echoes)
        deadline = time.monotonic() + self.o.drain
        while time.monotonic() < deadline:
            if all(r.delivered >= wanted and r.echoed >= echoes for r in self._sent.values() if r.acked):
                return
            await asyncio.sleep(0.05)

    async def _report_progress(self) -> None:
        """A line a second; the counts include the warm-up (the summary counts the measured window only)."""
        last = 0
        began = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            r = self.result
            now = time.monotonic()
            phase = self._phase
            if phase == "sending":
                phase = "warming up" if now < self._start else "measuring"
            print(
                f"[{now - began:6.1f}s] {phase}: connected {sum(s.connected for s in self.sockets)}"
                f", sent {r.sent_all}, acked {r.acked_all}, delivered {r.delivered_all}"
                f" (+{r.delivered_all - last}/s), errors {sum(r.errors.values())}",
                file=sys.stderr,
                flush=True,
            )
            last = r.delivered_all
