"""The call state machine's promises when several WhatsChat processes share live calls.

Two `CallService` instances ("a" and "b", as two processes would be) share one store and one real
redis-server started for this module; each has its own Redis connection and its own ring loop. A call
started on one can be answered, rejected, ended, signalled and timed out on the other, each change
happens once, and busy users are busy everywhere. The same tests run against `MemoryLiveCalls` with a
single instance (then "a" and "b" are the same process). Ring timeouts are 0.3 s; every wait is for a
condition, bounded, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from handlers.sio.events import payload as event_payload
from models.auth import Identity
from models.calls import CallService
from models.chats import ChatService
from models.clock import new_id, now_iso
from models.documents import Call, User
from models.errors import CallFailed, NotFound, ParticipantsOffline
from models.live_calls import LiveCalls, MemoryLiveCalls, RedisLiveCalls
from models.notifier import Notifier
from models.store.sqlite import SqliteStore
from models.views import Relay
from tests.redis_support import RedisServer

pytestmark = pytest.mark.redis  # starts a redis-server: `make check` leaves this module out
RING = 0.3
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank")


# a real redis-server for the module ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with RedisServer(log=tmp_path_factory.mktemp("redis") / "redis.log") as server:
        yield server.port


# the world: one store, a recording notifier, call services on a shared registry ------------------------------------


@dataclass
class Sent:
    by: str  # which instance sent it
    users: list[str]
    event: str
    payload: dict[str, Any]


class Recorder:
    """Every event any instance sent, in order."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []

    def notifier(self, name: str) -> Notifier:
        recorder = self

        class Recording(Notifier):
            async def to_users(self, user_ids: Any, event: str, view: Any) -> None:
                # the view, as the Socket.IO notifier writes it
                recorder.sent.append(Sent(name, list(user_ids), event, event_payload(event, view)))

        return Recording()

    def of(self, event: str, call_id: str | None = None) -> list[Sent]:
        key = "callId" if event.startswith("webrtc") else "id"
        return [s for s in self.sent if s.event == event and (call_id is None or s.payload[key] == call_id)]

    def statuses(self, call_id: str) -> list[str]:
        """The call status of every `call_status_update` of the call, in order."""
        return [s.payload["status"] for s in self.of("call_status_update", call_id)]

    def updates_to(self, user_id: str, call_id: str) -> list[Sent]:
        return [s for s in self.sent if s.payload.get("id") == call_id and user_id in s.users]


class Presence:
    """Everyone is online but `offline`; collects the last-socket hooks."""

    def __init__(self, offline: tuple[str, ...] = ()) -> None:
        self.offline = set(offline)
        self.hooks: list[Callable[[str], Any]] = []

    def on_last_socket_closed(self, hook: Callable[[str], Any]) -> None:
        self.hooks.append(hook)

    def is_online(self, user_id: str) -> bool:
        return user_id not in self.offline


class AsyncPresence(Presence):
    """Presence shared across processes answers `is_online` asynchronously."""

    async def is_online(self, user_id: str) -> bool:  # type: ignore[override]
        await asyncio.sleep(0)
        return user_id not in self.offline


@dataclass
class World:
    backend: str
    store: SqliteStore
    recorder: Recorder
    users: dict[str, Identity]
    port: int | None
    services: list[CallService] = field(default_factory=list)
    clients: list[Any] = field(default_factory=list)
    memory: MemoryLiveCalls = field(default_factory=MemoryLiveCalls)

    def __getattr__(self, name: str) -> Identity:
        if name in NAMES:
            return self.users[name]
        raise AttributeError(name)

    def registry(self) -> LiveCalls:
        if self.backend == "memory":
            return self.memory
        client = redis.asyncio.Redis(host="127.0.0.1", port=self.port)
        self.clients.append(client)
        return RedisLiveCalls(client)

    async def spawn(self, name: str, presence: Presence | None = None, ring: float = RING) -> CallService:
        """One more instance (a process) on the shared store and registry, its ring loop running."""
        presence = presence or Presence()
        notifier = self.recorder.notifier(name)
        chats = ChatService(self.store, presence, notifier)  # type: ignore[arg-type]
        service = CallService(self.store, chats, presence, notifier, ring, live=self.registry())  # type: ignore[arg-type]
        await service.start_background()
        self.services.append(service)
        return service

    async def pair(self) -> tuple[CallService, CallService]:
        """Two processes on Redis; one and the same in memory."""
        a = await self.spawn("a")
        return (a, await self.spawn("b")) if self.backend == "redis" else (a, a)

    async def registry_is_empty(self) -> bool:
        """No live call, busy mark, ring deadline or lock left anywhere."""
        if self.backend == "memory":
            live = self.memory
            return not (live._calls or live._busy or live._ring or live._locks or live._held)
        client = redis.asyncio.Redis(host="127.0.0.1", port=self.port)
        try:
            return not await client.keys("whatschat:*")
        finally:
            await client.aclose()

    async def close(self) -> None:
        for service in self.services:
            await service.close()
        for client in self.clients:
            await client.aclose()


async def until(condition: Callable[[], Any], what: str, timeout: float = 5.0) -> None:
    """Wait for `condition()` (sync or async) to hold, at most `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _make_world(backend: str, tmp_path: Path, port: int | None) -> World:
    store = SqliteStore(tmp_path / "calls.db")
    await store.open()
    users = {}
    for name in NAMES:
        now = now_iso()
        user = User(new_id(), f"{name}@example.com", name, "x", now, now)
        await store.insert_user(user)
        users[name] = Identity(user, "session")
    if port is not None:
        client = redis.asyncio.Redis(host="127.0.0.1", port=port)
        await client.flushall()
        await client.aclose()
    return World(backend, store, Recorder(), users, port)


@pytest.fixture(params=["memory", "redis"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    port = request.getfixturevalue("redis_port") if request.param == "redis" else None
    made = await _make_world(request.param, tmp_path, port)
    yield made
    await made.close()
    await made.store.close()


@pytest.fixture
async def redis_world(redis_port: int, tmp_path: Path) -> AsyncIterator[World]:
    made = await _make_world("redis", tmp_path, redis_port)
    yield made
    await made.close()
    await made.store.close()


def call_to(*users: Identity, call_type: str = "audio") -> dict[str, Any]:
    return {"type": call_type, "participants": [u.user.id for u in users]}


def statuses(call: Call) -> dict[str, str]:
    return {p.user_id: p.status for p in call.participants}


def one_of(results: list[Any], kind: type) -> tuple[Any, Any]:
    """(the result that is a `kind`, the other one) -- asserting there is exactly one of each."""
    wins = [r for r in results if isinstance(r, kind)]
    assert len(wins) == 1, results
    return wins[0], next(r for r in results if r is not wins[0])


# the tests -----------------------------------------------------------------------------------------------------------


def test_the_registry_defaults_to_memory() -> None:
    presence, notifier = Presence(), Notifier()
    service = CallService(None, None, presence, notifier, RING)  # type: ignore[arg-type]
    assert isinstance(service.live, MemoryLiveCalls)
    assert presence.hooks == [service.user_gone]


async def test_start_on_a_answer_on_b_end_on_a_completes_once(world: World) -> None:
    a, b = await world.pair()
    alice, bob = world.alice, world.bob

    call = await a.start(alice, call_to(bob))
    assert call.status == "ringing"
    assert [s.users for s in world.recorder.of("incoming_call", call.id)] == [[bob.user.id]]

    answered = await b.answer(bob, call.id)
    assert answered.status == "ongoing" and answered.started_at is not None
    assert (await a.get(alice, call.id)).status == "ongoing"  # a sees what b did
    history, total = await a.history(bob, None, 1, 10)
    assert total == 1 and history[0].status == "ongoing"

    ended = await a.end(alice, call.id)
    assert ended.status == "completed" and ended.duration is not None
    assert statuses(ended) == {alice.user.id: "left", bob.user.id: "left"}
    assert world.recorder.statuses(call.id) == ["ringing", "ongoing", "completed"]
    stored = await world.store.get_call(call.id)
    assert stored is not None and stored.status == "completed" and stored.ended_at is not None
    assert (await b.get(bob, call.id)).status == "completed"
    with pytest.raises(NotFound):
        await b.end(bob, call.id)
    assert world.recorder.statuses(call.id).count("completed") == 1
    assert await world.registry_is_empty()


async def test_racing_answers_one_wins(world: World) -> None:
    a, b = await world.pair()
    alice, bob = world.alice, world.bob
    for _ in range(5):
        call = await a.start(alice, call_to(bob))

        results = await asyncio.gather(a.answer(bob, call.id), b.answer(bob, call.id), return_exceptions=True)

        won, lost = one_of(results, Call)
        assert won.status == "ongoing"
        assert isinstance(lost, CallFailed) and "answered" in lost.message, lost
        assert world.recorder.statuses(call.id) == ["ringing", "ongoing"]
        await b.end(alice, call.id)
    assert await world.registry_is_empty()


async def test_racing_ends_end_the_call_once(world: World) -> None:
    a, b = await world.pair()
    alice, bob = world.alice, world.bob
    call = await a.start(alice, call_to(bob))
    results = await asyncio.gather(a.end(alice, call.id), b.end(alice, call.id), return_exceptions=True)
    won, lost = one_of(results, Call)
    assert won.status == "cancelled" and isinstance(lost, NotFound), results

    call = await b.start(alice, call_to(bob))
    await a.answer(bob, call.id)
    results = await asyncio.gather(a.end(alice, call.id), b.end(bob, call.id), return_exceptions=True)
    assert any(isinstance(r, Call) and r.status == "completed" for r in results), results
    assert all(isinstance(r, (Call, NotFound)) for r in results), results
    assert world.recorder.statuses(call.id) == ["ringing", "ongoing", "completed"]
    assert await world.registry_is_empty()


async def test_the_ring_timeout_fires_once(world: World) -> None:
    a, b = await world.pair()  # on Redis both loops poll for the same deadline
    alice, bob, carol = world.alice, world.bob, world.carol
    call = await a.start(alice, call_to(bob, carol))

    await until(lambda: "missed" in world.recorder.statuses(call.id), "the ring timeout")
    await until(world.registry_is_empty, "the call to be dropped")

    assert world.recorder.statuses(call.id) == ["ringing", "missed"]
    stored = await world.store.get_call(call.id)
    assert stored is not None and stored.status == "missed"
    assert statuses(stored) == {alice.user.id: "left", bob.user.id: "missed", carol.user.id: "missed"}
    # nothing is left to fire again, and everyone is free to call
    again = await b.start(bob, call_to(carol))
    assert again.status == "ringing"
    await a.end(bob, again.id)


async def test_a_ring_timeout_with_someone_answered_only_misses_the_rest(world: World) -> None:
    a, b = await world.pair()
    alice, bob, carol = world.alice, world.bob, world.carol
    call = await a.start(alice, call_to(bob, carol))
    await b.answer(bob, call.id)

    await until(lambda: len(world.recorder.statuses(call.id)) == 3, "the ring timeout")

    assert world.recorder.statuses(call.id) == ["ringing", "ongoing", "ongoing"]
    now = await a.get(alice, call.id)
    assert statuses(now) == {alice.user.id: "answered", bob.user.id: "answered", carol.user.id: "missed"}
    ended = await b.end(bob, call.id)
    assert ended.status == "completed"
    assert await world.registry_is_empty()


async def test_the_ring_timeout_fires_once_after_the_starting_process_closed(redis_world: World) -> None:
    a = await redis_world.spawn("a", ring=1.0)
    for name in ("b", "c"):  # two more processes, their ring loops polling
        await redis_world.spawn(name)
    alice, bob = redis_world.alice, redis_world.bob
    call = await a.start(alice, call_to(bob))
    await a.close()  # the starting process is gone: b and c race for its deadline

    await until(lambda: "missed" in redis_world.recorder.statuses(call.id), "the ring timeout")
    await until(redis_world.registry_is_empty, "the call to be dropped")

    missed = [s for s in redis_world.recorder.of("call_status_update", call.id) if s.payload["status"] == "missed"]
    assert len(missed) == 1 and missed[0].by in ("b", "c"), missed
    assert redis_world.recorder.statuses(call.id) == ["ringing", "missed"]
    stored = await redis_world.store.get_call(call.id)
    assert stored is not None and stored.status == "missed"


async def test_busy_is_busy_on_every_instance(world: World) -> None:
    a, b = await world.pair()
    alice, bob, carol, dave = world.alice, world.bob, world.carol, world.dave
    first = await a.start(alice, call_to(bob))

    with pytest.raises(CallFailed) as refused:
        await b.start(carol, call_to(bob))
    assert refused.value.details == {"busy": [bob.user.id]}
    with pytest.raises(CallFailed, match="already in a call"):
        await b.start(alice, call_to(dave))
    with pytest.raises(CallFailed, match="already in a call"):
        await b.start(bob, call_to(dave))  # ringing counts as busy too

    second = await b.start(carol, call_to(bob, dave))
    assert statuses(second)[bob.user.id] == "rejected" and second.participants[1].reason == "busy"
    assert statuses(second)[dave.user.id] == "invited"

    await b.end(alice, first.id)  # ending on the other instance frees bob everywhere
    third = await a.start(bob, call_to(alice))
    assert statuses(third)[alice.user.id] == "invited"
    for call, caller in ((second, carol), (third, bob)):
        await a.end(caller, call.id)
    assert await world.registry_is_empty()


async def test_concurrent_starts_claim_each_user_once(world: World) -> None:
    a, b = await world.pair()
    alice, bob, carol, dave, erin = world.alice, world.bob, world.carol, world.dave, world.erin

    # two callers, one invitee
    results = await asyncio.gather(a.start(alice, call_to(bob)), b.start(carol, call_to(bob)), return_exceptions=True)
    won, lost = one_of(results, Call)
    assert isinstance(lost, CallFailed) and lost.details == {"busy": [bob.user.id]}, lost
    await a.end(alice if won.initiator_id == alice.user.id else carol, won.id)

    # one caller, two calls
    results = await asyncio.gather(a.start(dave, call_to(bob)), b.start(dave, call_to(erin)), return_exceptions=True)
    won, lost = one_of(results, Call)
    assert isinstance(lost, CallFailed) and "already in a call" in lost.message, lost
    await b.end(dave, won.id)
    assert await world.registry_is_empty()


async def test_relay_reaches_across_instances(world: World) -> None:
    a, b = await world.pair()
    alice, bob, carol = world.alice, world.bob, world.carol
    call = await a.start(alice, call_to(bob))

    ack = await b.relay(bob, "webrtc_offer", {"callId": call.id, "to": alice.user.id, "sdp": {"type": "offer"}})
    assert ack == Relay(call.id, alice.user.id)
    await b.answer(bob, call.id)
    await a.relay(alice, "webrtc_answer", {"callId": call.id, "to": bob.user.id, "sdp": "v=0"})

    offer, answer = world.recorder.of("webrtc_offer", call.id), world.recorder.of("webrtc_answer", call.id)
    assert [(s.users, s.payload["from"]) for s in offer] == [([alice.user.id], bob.user.id)]
    assert [(s.users, s.payload["from"], s.payload["sdp"]) for s in answer] == [([bob.user.id], alice.user.id, "v=0")]
    with pytest.raises(CallFailed):
        await b.relay(bob, "webrtc_ice_candidate", {"callId": call.id, "to": bob.user.id, "candidate": "c"})
    with pytest.raises(NotFound):
        await b.relay(carol, "webrtc_ice_candidate", {"callId": call.id, "to": bob.user.id, "candidate": "c"})

    await a.end(bob, call.id)
    with pytest.raises(NotFound):
        await b.relay(alice, "webrtc_offer", {"callId": call.id, "to": bob.user.id, "sdp": "v=0"})
    assert len(world.recorder.of("webrtc_ice_candidate")) == 0
    assert await world.registry_is_empty()


async def test_a_user_gone_on_another_instance_leaves_the_call(world: World) -> None:
    a, b = await world.pair()
    alice, bob, carol = world.alice, world.bob, world.carol
    call = await a.start(alice, call_to(bob, carol))

    await b.user_gone(bob.user.id)  # a ringing invitee's last socket closed, on b
    now = await a.get(alice, call.id)
    assert now.status == "ringing" and statuses(now)[bob.user.id] == "missed"
    assert now.participant(bob.user.id).reason == "offline"  # type: ignore[union-attr]
    await b.user_gone(bob.user.id)  # not in a call any more: nothing happens
    await b.user_gone(world.dave.user.id)
    assert world.recorder.statuses(call.id) == ["ringing", "ringing"]

    await a.answer(carol, call.id)
    await b.user_gone(alice.user.id)  # the caller goes: two are no longer in, the call is over
    assert world.recorder.statuses(call.id) == ["ringing", "ringing", "ongoing", "completed"]
    assert await world.registry_is_empty()


async def test_ringing_caller_gone_elsewhere_cancels(world: World) -> None:
    a, b = await world.pair()
    call = await a.start(world.alice, call_to(world.bob))
    await b.user_gone(world.alice.user.id)
    assert world.recorder.statuses(call.id) == ["ringing", "cancelled"]
    assert await world.registry_is_empty()


async def test_who_blocked_the_caller_hears_nothing_from_any_instance(world: World) -> None:
    a, b = await world.pair()
    alice, bob, carol = world.alice, world.bob, world.carol
    await world.store.set_block(carol.user.id, alice.user.id, now_iso(), True)
    call = await a.start(alice, call_to(bob, carol))
    assert statuses(call)[carol.user.id] == "missed"

    await b.answer(bob, call.id)
    await b.end(bob, call.id)

    assert world.recorder.statuses(call.id) == ["ringing", "ongoing", "completed"]
    assert world.recorder.updates_to(carol.user.id, call.id) == []
    assert world.recorder.updates_to(bob.user.id, call.id) != []


async def test_presence_may_answer_asynchronously(world: World) -> None:
    service = await world.spawn("async", presence=AsyncPresence(offline=(world.bob.user.id,)))
    call = await service.start(world.alice, call_to(world.bob, world.carol))
    assert statuses(call) == {
        world.alice.user.id: "answered",
        world.bob.user.id: "missed",
        world.carol.user.id: "invited",
    }
    with pytest.raises(ParticipantsOffline):
        await service.start(world.dave, call_to(world.bob))
    await service.end(world.alice, call.id)
    assert await world.registry_is_empty()


async def test_a_stale_busy_mark_does_not_block(redis_world: World) -> None:
    a = await redis_world.spawn("a")
    client = redis.asyncio.Redis(host="127.0.0.1", port=redis_world.port)
    try:  # a process died during a call whose record is gone: the mark names nothing live
        await client.set(f"whatschat:busy:{redis_world.bob.user.id}", new_id())
    finally:
        await client.aclose()
    call = await a.start(redis_world.alice, call_to(redis_world.bob))
    assert statuses(call)[redis_world.bob.user.id] == "invited"
    await a.end(redis_world.alice, call.id)
    assert await redis_world.registry_is_empty()
