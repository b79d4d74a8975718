"""The realtime guarantees, checked against a model over several real server processes.

A run starts a real `redis-server` and N `python -m server serve` processes on one data folder,
registers users, puts them in groups and private chats, and connects several Socket.IO devices
per user, each to a random process. Seeded workers then do random operations of every kind a
client does: sends over sockets and REST (with `clientId`, and retries of it), edits, deletes,
read marks, typing, members added and removed, leaving, blocking, and devices dropping and
reconnecting to another process with `sync`. Optionally, halfway through, Redis is restarted or
one process is SIGKILLed.

Every operation is recorded as a window `[start, ack]` on the test's one clock: when it was
issued, and when its answer came back. From those windows alone (never from timing guesses) the
checker derives what each socket must and must not have received:

- **missing**: a socket that stayed connected to the end did not get an event that happened
  after it authenticated, in a chat its user was a member of during the whole window;
- **misdirected**: a socket got an event of a chat its user was surely not in during the
  window (removed or left before it was issued, or added only after it was acknowledged);
- **duplicate**: a socket got the same event twice (a `clientId` retry included);
- **order**: a socket got message Y before message X of the same chat although X was
  acknowledged before Y was issued; or an edit or delete before the message it changes; or
  an older edit after a newer one;
- **catch-up gap**: a message of a chat the user is still in at the end, sent while they were
  surely a member, that the device never got live nor through `sync` after a reconnect;
- **lost**: an acknowledged message that is not in the chat's history at the end.

Windows that overlap a membership change are ambiguous and checked for nothing but
duplicates and order. Run it with `python -m tests.realtime_model --help` (`make soak`), or
through `tests/test_realtime_model.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from tests.cluster_support import Node, server_env
from tests.redis_support import RedisServer, free_port

NEVER = math.inf  # the ack time of an operation whose outcome is unknown
CHAT_EVENTS = ("new_message", "message_edited", "message_deleted")
NAMESPACES = ("/", "/messages")
SYNC_OVERLAP = 3.0  # seconds a reconnecting device syncs back from its cursor (repeats are dropped by id)
BARRIER_WAIT = 15.0  # seconds a device waits for its own barrier message before calling it lost


@dataclass(frozen=True)
class Settings:
    """One run's size; `make test` runs a few hundred operations, `make soak` 10,000 over 50 devices."""

    seed: int = 1
    processes: int = 2
    users: int = 8
    devices: int = 12
    groups: int = 3
    private_chats: int = 6
    operations: int = 600
    workers: int = 6
    seconds: float = 120.0  # the run stops issuing operations after this long, whatever the count
    chaos: str = "none"  # none | redis (restart Redis halfway) | kill (SIGKILL one process halfway)


def _earlier(cursor: str, seconds: float) -> str:
    """A sync cursor (message id or ISO time) moved `seconds` back, as an ISO time."""
    if len(cursor) == 24 and not cursor.endswith("Z"):  # an id: its first 12 hex digits are its time in ms
        moment = datetime.fromtimestamp(int(cursor[:12], 16) / 1000, UTC)
    else:
        moment = datetime.fromisoformat(cursor.replace("Z", "+00:00"))
    return (moment - timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _unavailable(answer: dict[str, Any] | None) -> bool:
    """A 503 in an ack: the message may be stored though nobody heard of it, so its outcome is unknown."""
    return answer is not None and (answer.get("error") or {}).get("code") == "SYS_001"


# the model --------------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Act:
    """One operation: what, on which chat, by whom, and its window on the test's clock."""

    kind: str
    chat: str
    user: str
    start: float
    ack: float = NEVER
    ok: bool | None = None  # None: no answer (the socket dropped, a timeout): it may or may not have happened
    origin: Session | None = None  # the socket that issued it, which gets no echo of its own event
    target: str = ""  # the member added or removed; the message edited or deleted
    key: tuple[str, ...] = ()  # what the event it causes is recognised by

    def done(self, now: float, ok: bool) -> None:
        self.ack, self.ok = now, ok


@dataclass(eq=False)
class Session:
    """One connection of a device, from its `authenticated` to its end."""

    device: Device
    number: int
    process: int
    namespace: str
    client: socketio.AsyncClient
    authenticated: float = NEVER
    ended: float | None = None
    dropped: bool = False  # ended by the server or the network, not by the device
    received: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set at every event received
    # events acknowledged before this time must all have reached the session (see `Run.barrier`)
    checked_until: float | None = None


@dataclass(eq=False)
class Device:
    name: str
    user: User
    sessions: list[Session] = field(default_factory=list)
    cursor: str = ""
    synced: set[str] = field(default_factory=set)  # message ids that came through `sync`
    sent: set[str] = field(default_factory=set)  # ids of messages this device sent and saw acknowledged
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def live(self) -> Session | None:
        last = self.sessions[-1] if self.sessions else None
        return last if last is not None and last.ended is None and last.client.connected else None


@dataclass(eq=False)
class User:
    id: str
    name: str
    token: str
    devices: list[Device] = field(default_factory=list)


class Model:
    """What was acknowledged: messages, edits, deletes and membership windows."""

    def __init__(self) -> None:
        self.acts: list[Act] = []
        self.by_key: dict[tuple[str, ...], Act] = {}
        self.by_client_id: dict[str, Act] = {}
        self.initial: set[tuple[str, str]] = set()
        self.membership: dict[tuple[str, str], list[Act]] = defaultdict(list)
        self.members: dict[str, set[str]] = defaultdict(set)  # the latest acknowledged view, to choose operations
        self.owner: dict[str, str] = {}
        self.pairs: dict[str, tuple[str, str]] = {}
        self.notes: dict[str, str] = {}  # user -> their group of one
        self.messages: dict[str, list[Act]] = defaultdict(list)  # chat -> acknowledged sends
        self.deleted: set[str] = set()

    def status(self, chat: str, user: str, start: float, ack: float) -> str:
        """`member`, `nonmember` or `unknown` for the whole window `[start, ack]`."""
        state: bool | None = (chat, user) in self.initial
        previous: Act | None = None
        changes = [a for a in self.membership[(chat, user)] if a.ok is not False]
        if any(a.start <= ack and a.ack >= start for a in changes):
            return "unknown"  # changed while the event happened (or at some unknown moment after it began)
        for act in sorted((a for a in changes if a.ack < start), key=lambda a: a.ack):
            if act.ok is None or (previous is not None and previous.ack > act.start and previous.kind != act.kind):
                state = None  # it may not have happened, or two changes raced each other: not known
            else:
                state = act.kind == "add"
            previous = act
        return "unknown" if state is None else "member" if state else "nonmember"


# the run ----------------------------------------------------------------------------------------------------------


class Run:
    def __init__(self, settings: Settings, urls: list[str], http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.urls = urls
        self.alive = list(range(len(urls)))
        self.http = http
        self.rng = random.Random(settings.seed)
        self.model = Model()
        self.users: list[User] = []
        self.devices: list[Device] = []
        self.loop = asyncio.get_running_loop()
        self.counter = itertools.count(1)
        self.started_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.issued = Counter[str]()
        self.failed = Counter[str]()  # operations that raised (a dropped connection, a timeout)
        self.refused = Counter[str]()  # sends refused, by error code (blocked, not a member, ...)
        self.reconnects = 0
        self.started = 0  # operations issued, by every worker
        self.chaos = "none"
        self.tasks: set[asyncio.Task[None]] = set()  # reconnections under way
        self.unexpected: list[str] = []

    def now(self) -> float:
        return self.loop.time()

    def user(self, user_id: str) -> User:
        return next(u for u in self.users if u.id == user_id)

    def url(self, rng: random.Random) -> str:
        return self.urls[rng.choice(self.alive)]

    async def rest(self, method: str, path: str, user: User, rng: random.Random, **kwargs: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {user.token}"}
        for attempt in range(3):  # a process that was just killed refuses the connection: try another
            url = self.url(rng)
            try:
                async with self.http.request(method, url + "/api/v1" + path, headers=headers, **kwargs) as response:
                    return response.status, await response.json(content_type=None)
            except aiohttp.ClientConnectionError:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")

    # set-up

    async def setup(self) -> None:
        s = self.settings
        tag = f"{s.seed}x{self.rng.randrange(10**6)}"
        for n in range(s.users):
            name = f"m{tag}u{n}"
            async with self.http.post(
                self.urls[0] + "/api/v1/auth/register",
                json={"username": name, "email": f"{name}@example.com", "password": "Passw0rd"},
            ) as response:
                data = (await response.json())["data"]
            self.users.append(User(data["user"]["id"], name, data["token"]))
        for n in range(s.devices):
            user = self.users[n % s.users]
            device = Device(f"d{n}", user, cursor=self.started_at)
            user.devices.append(device)
            self.devices.append(device)
        for _ in range(s.groups):
            owner, *others = self.rng.sample(self.users, k=max(2, s.users // 2))
            status, body = await self.rest(
                "POST", "/groups", owner, self.rng, json={"name": "model", "participants": [u.id for u in others]}
            )
            assert status == 201, body
            chat = body["data"]["id"]
            self.model.owner[chat] = owner.id
            for user in (owner, *others):
                self.model.initial.add((chat, user.id))
                self.model.members[chat].add(user.id)
        for user in self.users:  # a group of one each, which nothing changes: where its barriers go
            status, body = await self.rest(
                "POST", "/groups", user, self.rng, json={"name": "notes", "participants": []}
            )
            assert status == 201, body
            chat = body["data"]["id"]
            self.model.notes[user.id] = chat
            self.model.initial.add((chat, user.id))
            self.model.members[chat].add(user.id)
        pairs = list(itertools.combinations(self.users, 2))
        for a, b in self.rng.sample(pairs, k=min(s.private_chats, len(pairs))):
            status, body = await self.rest(
                "POST", "/chats", a, self.rng, json={"type": "private", "participants": [b.id]}
            )
            assert status in (200, 201), body
            chat = body["data"]["id"]
            self.model.pairs[chat] = (a.id, b.id)
            for user in (a, b):
                self.model.initial.add((chat, user.id))
                self.model.members[chat].add(user.id)
        await asyncio.gather(*(self.connect(device, self.rng) for device in self.devices))

    # devices

    async def connect(self, device: Device, rng: random.Random) -> None:
        """A new session on a random live process, then `sync` from the device's cursor."""
        for attempt in range(40):  # a process or Redis may be down for a moment: bounded retries
            process = rng.choice(self.alive)
            namespace = rng.choice(NAMESPACES)
            client = socketio.AsyncClient(reconnection=False)
            session = Session(device, len(device.sessions) + 1, process, namespace, client)
            authenticated = asyncio.Event()
            self._listen(session, authenticated)
            try:
                await client.connect(
                    self.urls[process],
                    namespaces=[namespace],
                    auth={"token": device.user.token},
                    transports=["websocket"],
                    wait_timeout=5,
                )
                await asyncio.wait_for(authenticated.wait(), 5)
                if session.authenticated is NEVER:
                    raise ConnectionRefusedError("unauthorized")
            except (socketio.exceptions.ConnectionError, TimeoutError, OSError):
                with contextlib.suppress(Exception):
                    await client.disconnect()
                await asyncio.sleep(min(0.1 * (attempt + 1), 0.5))
                continue
            device.sessions.append(session)
            if await self.catch_up(session):
                return
            await self.drop(session)
        self.unexpected.append(f"{device.name} could not connect in 40 attempts")

    def _listen(self, session: Session, authenticated: asyncio.Event) -> None:
        client, ns = session.client, session.namespace

        async def on_authenticated(*_: Any) -> None:
            session.authenticated = self.now()
            authenticated.set()

        async def on_unauthorized(*_: Any) -> None:  # refused (Redis away at that moment): try again at once
            authenticated.set()

        async def on_new(payload: dict[str, Any]) -> None:
            self._received(session, ("new", payload["id"]), payload)

        async def on_edited(payload: dict[str, Any]) -> None:
            self._received(session, ("edit", payload["messageId"], payload["content"]), payload)

        async def on_deleted(payload: dict[str, Any]) -> None:
            self._received(session, ("delete", payload["messageId"]), payload)

        async def on_disconnect(*_: Any) -> None:
            if session.ended is None:  # not the device's own doing: reconnect elsewhere and catch up
                session.ended, session.dropped = self.now(), True
                if session.authenticated is not NEVER and session.device.sessions[-1] is session:
                    task = self.loop.create_task(self.reconnect(session.device, random.Random(self.rng.random())))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)

        client.on("authenticated", on_authenticated, namespace=ns)
        client.on("unauthorized", on_unauthorized, namespace=ns)
        client.on("new_message", on_new, namespace=ns)
        client.on("message_edited", on_edited, namespace=ns)
        client.on("message_deleted", on_deleted, namespace=ns)
        client.on("disconnect", on_disconnect, namespace=ns)

    def _received(self, session: Session, key: tuple[str, ...], payload: dict[str, Any]) -> None:
        if key[0] == "new" and key not in self.model.by_key:  # a send whose answer was lost: its clientId names it
            act = self.model.by_client_id.get(payload.get("clientId") or "")
            if act is not None:
                act.key = key
                self.model.by_key[key] = act
        session.received.append((key, self.now()))
        session.arrived.set()

    async def catch_up(self, session: Session) -> bool:
        """`sync` from the device's cursor until nothing more; False if the socket dropped meanwhile."""
        device = session.device
        after = _earlier(device.cursor, SYNC_OVERLAP)  # as docs/protocol.md advises a reconnecting client
        for _ in range(100):
            try:
                answer = await session.client.call(
                    "sync", {"after": after, "limit": 200}, namespace=session.namespace, timeout=10
                )
            except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError):
                return False
            if not answer.get("success"):
                self.unexpected.append(f"sync refused: {answer}")
                return False
            data = answer["data"]
            device.synced.update(m["id"] for m in data["messages"])
            device.synced.update(m["id"] for m in data["changed"])
            device.cursor = after = data["cursor"]
            if not data["hasMore"]:
                return True
        return True

    async def drop(self, session: Session) -> None:
        if session.ended is None:
            session.ended = self.now()
        with contextlib.suppress(Exception):
            await session.client.disconnect()

    async def reconnect(self, device: Device, rng: random.Random, barrier: bool = False) -> None:
        async with device.busy:
            self.reconnects += 1
            session = device.live
            if session is not None:
                if barrier:
                    await self.barrier(session, rng)
                await self.drop(session)
            await asyncio.sleep(rng.random() * 0.1)
            await self.connect(device, rng)

    async def barrier(self, session: Session, rng: random.Random) -> None:
        """Send a message over REST to the user's group of one, and wait for this session to get it.

        Everything acknowledged before it was issued is before it in every process's
        order, so by the time it arrives the session must have had all of that too:
        what a session ended by its device must have received becomes checkable.
        """
        user = session.device.user
        chat = self.model.notes[user.id]
        n = next(self.counter)
        issued = self.now()
        act = self._record(Act("send", chat, user.id, issued))
        self.model.by_client_id[f"c{n}"] = act
        status, body = await self.rest(
            "POST", "/messages", user, rng, json={"chatId": chat, "content": f"b{n}", "clientId": f"c{n}"}
        )
        self._sent(act, body if status < 500 else None, None)
        if not act.ok:
            if status < 500:  # a 503 while Redis is away leaves the session unchecked, as a drop does
                self.unexpected.append(f"{session.device.name}'s barrier was refused: {body}")
            return
        deadline = self.now() + BARRIER_WAIT
        while act.key not in {key for key, _ in session.received}:
            session.arrived.clear()
            if self.now() > deadline or session.ended is not None:
                if session.ended is None:
                    self.unexpected.append(f"{session.device.name} never got its barrier {act.key[1]}")
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.arrived.wait(), 1.0)
        session.checked_until = issued

    async def close(self) -> None:
        """Wait for reconnections under way, then end every session."""
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for device in self.devices:
            for session in device.sessions:
                await self.drop(session)

    # operations

    async def worker(self, number: int, deadline: float) -> None:
        rng = random.Random(self.settings.seed * 1000 + number)
        ops: list[tuple[Callable[[random.Random], Awaitable[None]], int]] = [
            (self.send_socket, 30),
            (self.send_rest, 10),
            (self.edit, 8),
            (self.delete, 4),
            (self.mark_read, 6),
            (self.typing, 5),
            (self.add_member, 6),
            (self.remove_member, 4),
            (self.leave, 2),
            (self.block, 3),
            (self.device_reconnect, 5),
        ]
        choices, weights = zip(*ops, strict=True)
        while self.started < self.settings.operations and self.now() < deadline:
            op = rng.choices(choices, weights)[0]
            before = self.started
            try:
                await op(rng)
            except (aiohttp.ClientError, TimeoutError, socketio.exceptions.SocketIOError) as exc:
                self.failed[f"{op.__name__}: {type(exc).__name__}"] += 1
            if self.started == before:  # nothing to do (every device reconnecting, say): let the others run
                await asyncio.sleep(0.005)

    def _my_chats(self, user: User) -> list[str]:
        return sorted(chat for chat, members in self.model.members.items() if user.id in members)

    def _live_device(self, rng: random.Random) -> Device | None:
        live = [d for d in self.devices if d.live is not None and not d.busy.locked()]
        return rng.choice(live) if live else None

    async def _socket_call(self, session: Session, event: str, data: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return await session.client.call(event, data, namespace=session.namespace, timeout=10)
        except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError):
            return None

    def _record(self, act: Act) -> Act:
        self.model.acts.append(act)
        self._issue(act.kind)
        return act

    def _issue(self, kind: str) -> None:
        """Count an operation issued: what the budget of operations counts."""
        self.issued[kind] += 1
        self.started += 1

    def _sent(self, act: Act, answer: dict[str, Any] | None, device: Device | None) -> None:
        if answer is None:
            return  # no answer: the send may or may not have happened (`by_client_id` finds it if it did)
        act.done(self.now(), bool(answer.get("success")))
        if not act.ok:
            self.refused[f"{act.kind}: {(answer.get('error') or {}).get('code')}"] += 1
        if act.ok:
            message_id = answer["data"]["id"]
            act.key = ("new", message_id)
            if act.key in self.model.by_key and self.model.by_key[act.key] is not act:
                return  # an idempotent repeat: the first act stands
            self.model.by_key[act.key] = act
            self.model.messages[act.chat].append(act)
            if device is not None:
                device.sent.add(message_id)

    async def send_socket(self, rng: random.Random) -> None:
        device = self._live_device(rng)
        chats = self._my_chats(device.user) if device else []
        if device is None or not chats:
            return
        session = device.live
        assert session is not None
        n = next(self.counter)
        chat = rng.choice(chats)
        payload = {"chatId": chat, "content": f"m{n}", "clientId": f"c{n}"}
        act = self._record(Act("send", chat, device.user.id, self.now(), origin=session))
        self.model.by_client_id[f"c{n}"] = act
        answer = await self._socket_call(session, "send_message", payload)
        self._sent(act, None if _unavailable(answer) else answer, device)
        if act.ok and rng.random() < 0.15:  # a client that did not trust its ack sends again
            self._issue("retry")
            again = await self._socket_call(session, "send_message", payload)
            if again is not None and again.get("success") and again["data"]["id"] != answer["data"]["id"]:
                self.unexpected.append(f"a clientId retry made a second message: {again['data']['id']}")

    async def send_rest(self, rng: random.Random) -> None:
        user = rng.choice(self.users)
        chats = self._my_chats(user)
        if not chats:
            return
        n = next(self.counter)
        chat = rng.choice(chats)
        act = self._record(Act("send", chat, user.id, self.now()))
        self.model.by_client_id[f"c{n}"] = act
        status, body = await self.rest(
            "POST", "/messages", user, rng, json={"chatId": chat, "content": f"r{n}", "clientId": f"c{n}"}
        )
        self._sent(act, body if status < 500 else None, None)

    def _own_message(self, rng: random.Random, user: User) -> Act | None:
        mine = [
            act
            for chat in self._my_chats(user)
            for act in self.model.messages[chat]
            if act.user == user.id and act.key[1] not in self.model.deleted
        ]
        return rng.choice(mine) if mine else None

    async def edit(self, rng: random.Random) -> None:
        device = self._live_device(rng)
        message = self._own_message(rng, device.user) if device else None
        if device is None or message is None or device.live is None:
            return
        session = device.live
        n = next(self.counter)
        content = f"e{n}"
        act = self._record(Act("edit", message.chat, device.user.id, self.now(), origin=session, target=message.key[1]))
        act.key = ("edit", message.key[1], content)
        self.model.by_key[act.key] = act
        answer = await self._socket_call(session, "edit_message", {"messageId": message.key[1], "content": content})
        if answer is not None:  # an edit whose ack shows other content was superseded by a newer one: no event
            act.done(self.now(), bool(answer.get("success")) and answer["data"]["content"] == content)

    async def delete(self, rng: random.Random) -> None:
        user = rng.choice(self.users)
        message = self._own_message(rng, user)
        if message is None:
            return
        act = self._record(Act("delete", message.chat, user.id, self.now(), target=message.key[1]))
        status, _ = await self.rest("DELETE", f"/messages/{message.key[1]}", user, rng)
        if status >= 500:  # 503 while Redis is away: maybe stored, never announced; a later delete says nothing
            self.model.deleted.add(message.key[1])
            return
        act.done(self.now(), status == 200)
        key = ("delete", message.key[1])
        if act.ok and key not in self.model.by_key:  # a repeated delete answers 200 and tells nobody
            act.key = key
            self.model.by_key[key] = act
            self.model.deleted.add(message.key[1])

    async def mark_read(self, rng: random.Random) -> None:
        device = self._live_device(rng)
        chats = self._my_chats(device.user) if device else []
        if device is None or device.live is None or not chats:
            return
        self._issue("mark_read")
        await self._socket_call(device.live, "mark_read", {"chatId": rng.choice(chats)})

    async def typing(self, rng: random.Random) -> None:
        device = self._live_device(rng)
        chats = self._my_chats(device.user) if device else []
        if device is None or device.live is None or not chats:
            return
        self._issue("typing")
        await self._socket_call(device.live, rng.choice(("typing_start", "typing_stop")), {"chatId": rng.choice(chats)})

    async def _membership(self, rng: random.Random, kind: str, chat: str, actor: User, target: str) -> None:
        act = self._record(Act(kind, chat, actor.id, self.now(), target=target))
        self.model.membership[(chat, target)].append(act)
        if kind == "add":
            status, _ = await self.rest("POST", f"/groups/{chat}/participants", actor, rng, json={"userIds": [target]})
        elif actor.id == target:
            status, _ = await self.rest("POST", f"/groups/{chat}/leave", actor, rng)
        else:
            status, _ = await self.rest("DELETE", f"/groups/{chat}/participants/{target}", actor, rng)
        if status >= 500:  # 503 while Redis is away: the store may hold the change, which nobody heard of
            act.ack = self.now()  # whether it happened stays unknown (`ok` None), but not when: by now
            return
        act.done(self.now(), status in (200, 201))
        if act.ok:
            (self.model.members[chat].add if kind == "add" else self.model.members[chat].discard)(target)

    async def add_member(self, rng: random.Random) -> None:
        chat = rng.choice(sorted(self.model.owner))
        outside = [u for u in self.users if u.id not in self.model.members[chat]]
        if outside:
            owner = self.user(self.model.owner[chat])
            await self._membership(rng, "add", chat, owner, rng.choice(outside).id)

    async def remove_member(self, rng: random.Random) -> None:
        chat = rng.choice(sorted(self.model.owner))
        inside = sorted(self.model.members[chat] - {self.model.owner[chat]})
        if inside:
            owner = self.user(self.model.owner[chat])
            await self._membership(rng, "remove", chat, owner, rng.choice(inside))

    async def leave(self, rng: random.Random) -> None:
        chat = rng.choice(sorted(self.model.owner))
        inside = sorted(self.model.members[chat] - {self.model.owner[chat]})
        if inside:
            user = self.user(rng.choice(inside))
            await self._membership(rng, "remove", chat, user, user.id)

    async def block(self, rng: random.Random) -> None:
        if not self.model.pairs:
            return
        a, b = rng.choice(sorted(self.model.pairs.values()))
        blocker = self.user(a)
        self._issue("block")
        method = rng.choice(("POST", "DELETE"))  # blocking refuses the other's sends; unblocking lets them through
        await self.rest(method, f"/users/{b}/block", blocker, rng)

    async def device_reconnect(self, rng: random.Random) -> None:
        device = self._live_device(rng)
        if device is not None:
            self._issue("reconnect")
            await self.reconnect(device, rng, barrier=True)


# checking ---------------------------------------------------------------------------------------------------------


@dataclass
class Report:
    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] += 1
        if len(self.examples[kind]) < 5:
            self.examples[kind].append(example)

    @property
    def clean(self) -> bool:
        return not self.counts

    def text(self) -> str:
        lines = [f"{k}: {v}" for k, v in sorted(self.figures.items())]
        lines.append("problems: " + (", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "none"))
        for kind, examples in sorted(self.examples.items()):
            lines += [f"  {kind}: {e}" for e in examples]
        return "\n".join(lines)


def check(run: Run, histories: dict[str, set[str]]) -> Report:
    model, report = run.model, Report()
    sends = [a for a in model.acts if a.kind == "send" and a.ok and a.key]
    events = [a for a in model.acts if a.kind in ("send", "edit", "delete") and a.ok and a.key]
    for device in run.devices:
        user = device.user.id
        for session in device.sessions:
            _check_session(model, session, user, events, report)
        known = {key[1] for s in device.sessions for key, _ in s.received if key[0] == "new"}
        known |= device.synced | device.sent
        last = device.sessions[-1] if device.sessions else None
        for act in sends:
            if act.key[1] in known or model.status(act.chat, user, act.start, NEVER) != "member":
                continue  # `sync` answers the chats the user is in: a member from the send to the end
            if last is not None and last.ended is None and act.start >= last.authenticated:
                continue  # the live check of the last session counts it
            spans = ", ".join(f"{x.authenticated:.3f}-{x.ended or 0:.3f}" for x in device.sessions)
            report.add(
                "catch-up gap",
                f"{device.name}: {act.key[1]} in {act.chat}, sent {act.start:.3f}-{act.ack:.3f}; sessions {spans}",
            )
    for act in sends:
        if act.key[1] not in histories.get(act.chat, set()):
            report.add("lost", f"{act.key[1]} acknowledged in {act.chat}")
    for problem in run.unexpected:
        report.add("unexpected", problem)
    return report


def _check_session(model: Model, session: Session, user: str, events: list[Act], report: Report) -> None:
    where = f"{session.device.name}#{session.number}@P{session.process}"
    got: set[tuple[str, ...]] = set()
    newest_start: dict[str, float] = {}  # chat -> the latest start among messages received so far
    edit_start: dict[str, float] = {}  # message -> the latest start among its edits received so far
    changed_first: set[str] = set()  # messages whose edit or delete came before the message itself
    for key, _ in session.received:
        if key in got:
            report.add("duplicate", f"{where}: {key}")
            continue
        got.add(key)
        act = model.by_key.get(key)
        if act is None:
            report.add("unknown event", f"{where}: {key}")
            continue
        if model.status(act.chat, user, act.start, act.ack) == "nonmember":
            changes = " ".join(
                f"{a.kind}{'' if a.ok else '?' if a.ok is None else '!'}@{a.start:.3f}-{a.ack:.3f}"
                for a in model.membership[(act.chat, user)]
            )
            report.add(
                "misdirected",
                f"{where} (from {session.authenticated:.3f}): {key} of {act.chat} ({act.kind} by {act.user},"
                f" {act.start:.3f}-{act.ack:.3f}); member {(act.chat, user) in model.initial}, then {changes}",
            )
        if key[0] == "new":
            if newest_start.get(act.chat, -NEVER) > act.ack:
                report.add("order", f"{where}: {key[1]} after a message issued once it was acknowledged")
            newest_start[act.chat] = max(newest_start.get(act.chat, -NEVER), act.start)
            if key[1] in changed_first:
                report.add("order", f"{where}: {key[1]} after its own edit or delete")
        else:
            if ("new", key[1]) not in got:
                changed_first.add(key[1])
            if key[0] == "edit":
                if edit_start.get(key[1], -NEVER) > act.ack:
                    report.add("order", f"{where}: an older edit of {key[1]} after a newer one")
                edit_start[key[1]] = max(edit_start.get(key[1], -NEVER), act.start)
    until = session.checked_until if session.ended is not None or session.checked_until else NEVER
    if until is None:
        return  # dropped: what it missed is the next session's `sync` to bring (the catch-up check)
    for act in events:
        if act.start < session.authenticated or act.ack > until or act.origin is session or act.key in got:
            continue
        if model.status(act.chat, user, act.start, act.ack) == "member":
            report.add("missing", f"{where}: {act.key} of {act.chat} ({act.kind} by {act.user})")


async def histories(run: Run) -> dict[str, set[str]]:
    """Every chat's stored message ids, read through REST by a member at the end."""
    out: dict[str, set[str]] = {}
    for chat in sorted(run.model.members):
        notes = {c: u for u, c in run.model.notes.items()}
        reader_id = run.model.owner.get(chat) or notes.get(chat) or run.model.pairs[chat][0]
        reader = run.user(reader_id)
        ids: set[str] = set()
        for page in range(1, 1000):
            status, body = await run.rest(
                "GET", f"/messages/{chat}", reader, run.rng, params={"limit": 100, "page": page}
            )
            assert status == 200, body
            ids |= {m["id"] for m in body["data"]["messages"]}
            if page >= body["data"]["pagination"]["pages"]:
                break
        out[chat] = ids
    return out


async def quiesce(run: Run, quiet: float = 1.0, bound: float = 20.0) -> None:
    """Wait until no socket has received anything for `quiet` seconds (at most `bound`)."""
    deadline = run.now() + bound
    total = -1
    while run.now() < deadline:
        now_total = sum(len(s.received) for d in run.devices for s in d.sessions)
        reconnecting = any(d.busy.locked() for d in run.devices)
        if now_total == total and not reconnecting:
            return
        total = now_total
        await asyncio.sleep(quiet)


# the harness ------------------------------------------------------------------------------------------------------


class Cluster:
    """A `redis-server` and N server processes on one data folder."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.folder = folder
        self.redis = RedisServer(log=folder / "redis.log")
        self.redis.start()
        self.nodes = [
            Node(f"P{n}", server_env(folder / "data", self.redis.url, free_port()), folder / f"server-{n}.log")
            for n in range(settings.processes)
        ]

    def start(self) -> None:
        for node in self.nodes:  # one after the other: the first creates the database
            node.start()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.redis.stop()

    def logs(self) -> str:
        return "\n".join(f"{n.name}:\n{n.tail()}" for n in self.nodes) + f"\nredis:\n{self.redis.tail()}"


async def chaos(run: Run, cluster: Cluster, kind: str, after: int) -> None:
    """Once `after` operations have begun: restart Redis (down for a second), or SIGKILL the last process."""
    while run.started < after:  # noqa: ASYNC110 - the workers count; nothing to signal from there
        await asyncio.sleep(0.05)
    if kind == "redis":
        await asyncio.to_thread(cluster.redis.stop)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(cluster.redis.start)
    elif kind == "kill":
        victim = len(cluster.nodes) - 1
        run.alive.remove(victim)
        await asyncio.to_thread(cluster.nodes[victim].kill)
    run.chaos = f"{kind} after {after} operations"


async def execute(settings: Settings, cluster: Cluster) -> Report:
    """Drive a started cluster with one run of `settings`; answers the checker's report."""
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        run = Run(settings, [n.url for n in cluster.nodes], http)
        began = time.monotonic()
        await run.setup()
        deadline = run.now() + settings.seconds
        jobs = [run.worker(n, deadline) for n in range(settings.workers)]
        trouble = None
        if settings.chaos != "none":
            trouble = asyncio.ensure_future(chaos(run, cluster, settings.chaos, settings.operations * 2 // 5))
        await asyncio.gather(*jobs)
        if trouble is not None:
            if not trouble.done():
                trouble.cancel()
            await asyncio.gather(trouble, return_exceptions=True)
        ops_done = time.monotonic() - began
        # the end, exactly: every live session gets a barrier of its own after everything else was acknowledged
        await asyncio.gather(*(run.barrier(d.live, random.Random(n)) for n, d in enumerate(run.devices) if d.live))
        await quiesce(run)  # and a quiet second, for anything (a duplicate) that would come after its barrier
        stored = await histories(run)
        report = check(run, stored)
        sessions = [s for d in run.devices for s in d.sessions]
        report.figures.update(
            seed=settings.seed,
            processes=settings.processes,
            devices=settings.devices,
            users=settings.users,
            operations=sum(run.issued.values()),
            issued=dict(sorted(run.issued.items())),
            failed=dict(sorted(run.failed.items())),
            refused=dict(sorted(run.refused.items())),
            acknowledged_messages=sum(1 for a in run.model.acts if a.kind == "send" and a.ok),
            events_received=sum(len(s.received) for s in sessions),
            sessions=len(sessions),
            dropped_sessions=sum(1 for s in sessions if s.dropped),
            reconnections=run.reconnects,
            seconds=round(ops_done, 1),
            chaos=run.chaos,
        )
        await run.close()
        return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.realtime_model", description=__doc__.split("\n\n")[0])
    for name, default in Settings().__dict__.items():
        parser.add_argument(f"--{name}", type=type(default), default=default)
    parser.add_argument("--keep", action="store_true", help="keep the folder with the servers' logs")
    args = parser.parse_args(argv)
    settings = Settings(**{k: v for k, v in vars(args).items() if k != "keep"})
    folder = Path(tempfile.mkdtemp(prefix="whatschat-model-"))
    cluster = Cluster(settings, folder)
    try:
        cluster.start()
        report = asyncio.run(execute(settings, cluster))
    finally:
        cluster.stop()
    print(report.text())
    print(json.dumps({"clean": report.clean, "problems": dict(report.counts), **report.figures}))
    if args.keep or not report.clean:
        print(f"logs in {folder}", file=sys.stderr)
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
