"""Login limits, event budgets and presence: one behaviour in memory and shared through Redis.

Every behavioural test runs twice, on `memory` (the classes a single process uses) and
on `redis` (the Redis-backed ones against a real redis-server this module starts on a
free port). "Two processes" are two instances with their own Redis connection and
process id; in memory they are one instance, which is what sharing means there. The
Redis-only tests kill a real child process to show that its sockets are forgotten.
Nothing asserts on durations: tests wait for conditions, with a timeout.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from handlers.sio.events import payload as event_payload
from models.documents import User
from models.errors import RateLimited
from models.notifier import Notifier
from models.presence import PresenceService
from models.ratelimit import Budgets, EventBudgets, Limiter, RateLimiter, RedisBudgets, RedisRateLimiter
from tests.redis_support import RedisServer

pytestmark = pytest.mark.redis  # starts a redis-server: `make check` leaves this module out
ROOT = Path(__file__).resolve().parents[1]
GRACE = 0.2  # seconds: a tiny grace period, so going offline is quick
LONG_GRACE = 30.0  # for the tests that must see a user still within their grace period
REFRESH = 0.2  # heartbeat of the test processes (dead after 3 missed beats)
RATES = {"messages": (0.001, 3.0), "typing": (20.0, 1.0)}  # messages barely refill; typing refills fast


# a real redis-server for the module --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server (no persistence) on a free loopback port: its URL."""
    with RedisServer(log=tmp_path_factory.mktemp("redis") / "redis.log") as server:
        yield server.url


# the two backends ------------------------------------------------------------------------------------------------


class FakeStore:
    """The part of the store presence uses: users, who shares a chat with whom, no blocks."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.shared: dict[str, list[str]] = {}

    def add(self, user_id: str, watchers: Iterable[str] = ("watcher",), **fields: Any) -> None:
        now = "2024-05-01T12:00:00.000Z"
        self.users[user_id] = User(user_id, f"{user_id}@example.com", user_id, "x", now, now, **fields)
        self.shared[user_id] = list(watchers)

    async def get_user(self, user_id: str) -> User | None:
        return self.users.get(user_id)

    async def update_user(self, user_id: str, changes: dict[str, Any]) -> User | None:
        user = self.users.get(user_id)
        for name, value in changes.items():
            setattr(user, name, value)
        return user

    async def shared_chat_user_ids(self, user_id: str) -> list[str]:
        return self.shared.get(user_id, [])

    async def blocked_ids(self, user_id: str) -> list[str]:
        return []


class RecordingNotifier(Notifier):
    """Every `user_status_changed`, as `(userId, status)`, whichever process sent it."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, str]] = []

    async def to_users(self, user_ids: Iterable[str], event: str, view: Any) -> None:
        assert event == "user_status_changed"
        payload = event_payload(event, view)  # the view, as the Socket.IO notifier writes it
        self.changes.append((payload["userId"], payload["status"]))

    def of(self, user_id: str) -> list[str]:
        return [status for uid, status in self.changes if uid == user_id]


class Backend:
    """Makes the limiter, budgets and presence of one "process" on this backend."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.clients: list[Redis] = []
        self.services: list[PresenceService] = []
        self._memory: dict[str, Any] = {}

    @property
    def shared(self) -> bool:
        return self.url is not None

    def client(self) -> Redis:
        assert self.url is not None
        client = Redis.from_url(self.url)
        self.clients.append(client)
        return client

    def limiter(self) -> Limiter:
        if self.url is None:
            return self._memory.setdefault("limiter", RateLimiter())
        return RedisRateLimiter(self.client())

    def budgets(self) -> EventBudgets:
        if self.url is None:
            return self._memory.setdefault("budgets", Budgets(RATES))
        return RedisBudgets(self.client(), RATES)

    async def presence(
        self, store: FakeStore, notifier: Notifier, grace: float = GRACE, process_id: str = "p1"
    ) -> PresenceService:
        if self.url is None:
            if "presence" not in self._memory:
                self._memory["presence"] = PresenceService(store, notifier, grace)
                self.services.append(self._memory["presence"])
            return self._memory["presence"]
        service = PresenceService(store, notifier, grace, self.client(), process_id, refresh_interval=REFRESH)
        self.services.append(service)
        await service.start()
        return service

    async def close(self) -> None:
        for service in self.services:
            await service.close()
        for client in self.clients:
            await client.aclose()


@pytest.fixture(params=["memory", "redis"])
def redis_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "memory" else request.getfixturevalue("redis_server")


@pytest.fixture
async def backend(redis_url: str | None) -> AsyncIterator[Backend]:
    backend = Backend(redis_url)
    if redis_url is not None:
        await backend.client().flushall()
    yield backend
    await backend.close()


@pytest.fixture
async def redis_only(redis_server: str) -> AsyncIterator[Backend]:
    backend = Backend(redis_server)
    await backend.client().flushall()
    yield backend
    await backend.close()


async def eventually(condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait until `condition()` holds (it may be a coroutine function)."""
    async with asyncio.timeout(timeout):
        while True:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.01)


# login limits ----------------------------------------------------------------------------------------------------


async def test_limiter_counts_hits_within_the_window(backend: Backend) -> None:
    limiter = backend.limiter()
    for _ in range(3):
        assert await limiter.retry_after("k", 3, 60) is None
        await limiter.hit("k", 60)
    wait = await limiter.retry_after("k", 3, 60)
    assert wait is not None and 0 < wait <= 60
    assert await limiter.retry_after("k", 4, 60) is None  # a larger budget still has room
    assert await limiter.retry_after("other", 1, 60) is None  # keys are independent


async def test_limiter_release_takes_back_one_hit_and_reset_all(backend: Backend) -> None:
    limiter = backend.limiter()
    for _ in range(2):
        await limiter.hit("k", 60)
    assert await limiter.retry_after("k", 2, 60) is not None
    await limiter.release("k")
    assert await limiter.retry_after("k", 2, 60) is None
    assert await limiter.retry_after("k", 1, 60) is not None
    await limiter.reset("k")
    assert await limiter.retry_after("k", 1, 60) is None
    await limiter.release("never-hit")  # nothing to take back: no error
    await limiter.reset("never-hit")


async def test_limiter_window_slides(backend: Backend) -> None:
    limiter = backend.limiter()
    await limiter.hit("k", 0.2)
    await limiter.hit("k", 0.2)
    assert await limiter.retry_after("k", 2, 0.2) is not None

    async def fits() -> bool:
        return await limiter.retry_after("k", 2, 0.2) is None

    await eventually(fits)


async def test_hit_if_allowed_hits_all_keys_or_none(backend: Backend) -> None:
    limiter = backend.limiter()
    assert await limiter.hit_if_allowed([("a", 1), ("b", 5)], 60) is None
    wait = await limiter.hit_if_allowed([("b", 5), ("a", 1)], 60)
    assert wait is not None and 0 < wait <= 60
    # `b` was not hit by the refused attempt: one hit so far, so a budget of 2 has room
    assert await limiter.retry_after("b", 2, 60) is None
    assert await limiter.retry_after("b", 1, 60) is not None


async def test_limiter_is_shared_and_atomic_across_processes(backend: Backend) -> None:
    one, two = backend.limiter(), backend.limiter()
    await one.hit("shared", 60)
    assert await two.retry_after("shared", 1, 60) is not None
    await two.reset("shared")
    assert await one.retry_after("shared", 1, 60) is None
    # parallel attempts from both: exactly the budget passes
    attempts = [(one if i % 2 else two).hit_if_allowed([("login", 5), ("address", 100)], 60) for i in range(20)]
    results = await asyncio.gather(*attempts)
    assert sum(result is None for result in results) == 5
    assert await one.retry_after("address", 6, 60) is None  # refused attempts counted nowhere
    assert await two.retry_after("address", 5, 60) is not None


# event budgets ---------------------------------------------------------------------------------------------------


async def test_budget_allows_a_burst_then_refuses_with_the_wait(backend: Backend) -> None:
    budgets = backend.budgets()
    for _ in range(3):
        assert await budgets.spend("u1", "messages") is None
    wait = await budgets.spend("u1", "messages")
    assert wait is not None and wait > 0
    with pytest.raises(RateLimited) as refused:
        await budgets.charge("u1", "messages")
    assert refused.value.retry_after >= 1
    assert await budgets.spend("u2", "messages") is None  # users are independent
    assert await budgets.spend("u1", "typing") is None  # and so are event classes
    await budgets.charge("u2", "messages")


async def test_budget_refills(backend: Backend) -> None:
    budgets = backend.budgets()
    assert await budgets.spend("u1", "typing") is None
    assert await budgets.spend("u1", "typing") is not None

    async def allowed() -> bool:
        return await budgets.spend("u1", "typing") is None

    await eventually(allowed)


async def test_budgets_are_shared_and_atomic_across_processes(backend: Backend) -> None:
    one, two = backend.budgets(), backend.budgets()
    spends = [(one if i % 2 else two).spend("u1", "messages") for i in range(10)]
    results = await asyncio.gather(*spends)
    assert sum(result is None for result in results) == 3
    assert await one.spend("u1", "messages") is not None
    assert await two.spend("u1", "messages") is not None


async def test_redis_state_expires(redis_only: Backend) -> None:
    """Nothing lives forever in Redis: windows and buckets expire once they no longer matter."""
    client = redis_only.client()
    await RedisRateLimiter(client).hit("k", 60)
    await RedisBudgets(client, RATES).spend("u1", "typing")
    assert 0 < await client.pttl("whatschat:rl:k") <= 61_000
    assert 0 < await client.pttl("whatschat:budget:typing:u1") <= 2_000


# presence --------------------------------------------------------------------------------------------------------


@pytest.fixture
def store() -> FakeStore:
    store = FakeStore()
    for user_id in ("u1", "u2", "u3"):
        store.add(user_id)
    return store


async def test_presence_from_first_socket_to_offline_after_grace(backend: Backend, store: FakeStore) -> None:
    notifier = RecordingNotifier()
    presence = await backend.presence(store, notifier)
    gone: list[str] = []

    async def hook(user_id: str) -> None:
        gone.append(user_id)

    presence.on_last_socket_closed(hook)
    assert not await presence.is_online("u1")
    await presence.socket_opened("u1", "s1")
    await presence.socket_opened("u1", "s2")
    assert notifier.of("u1") == ["online"]  # the first socket only
    assert await presence.is_online("u1")
    assert await presence.online_among(["u1", "u2"]) == {"u1"}
    assert await presence.count_online() == 1 and presence.online_users == 1
    await presence.socket_closed("u1", "s1")
    await presence.socket_closed("u1", "s1")  # twice: no change
    await presence.socket_closed("u2", "never-opened")
    assert gone == []
    await presence.socket_closed("u1", "s2")
    assert gone == ["u1"]  # the hooks run at once
    await eventually(lambda: notifier.of("u1") == ["online", "offline"])
    assert not await presence.is_online("u1")
    assert store.users["u1"].last_seen is not None
    assert await presence.count_online() == 0


async def test_presence_back_within_grace_is_silent(backend: Backend, store: FakeStore) -> None:
    notifier = RecordingNotifier()
    presence = await backend.presence(store, notifier, grace=LONG_GRACE)
    await presence.socket_opened("u1", "s1")
    await presence.socket_closed("u1", "s1")
    assert await presence.is_online("u1")  # within the grace period
    await presence.socket_opened("u1", "s2")
    assert notifier.of("u1") == ["online"]
    assert await presence.is_online("u1")


async def test_presence_as_others_see_it(backend: Backend, store: FakeStore) -> None:
    store.add("busy", presence_setting="busy")
    store.add("ghost", presence_setting="invisible")
    notifier = RecordingNotifier()
    presence = await backend.presence(store, notifier)
    for user_id in ("busy", "ghost"):
        await presence.socket_opened(user_id, "s")
    busy, ghost, offline = store.users["busy"], store.users["ghost"], store.users["u3"]
    assert await presence.presence_for(busy, "viewer") == "busy"
    assert await presence.presence_for(busy, "viewer", hidden_from_viewer=True) == "offline"
    assert await presence.presence_for(ghost, "viewer") == "offline"
    assert await presence.presence_for(ghost, "ghost") == "invisible"
    assert await presence.presence_for(offline, "u3") == "offline"
    assert notifier.of("ghost") == []  # an invisible user coming online looks the same: no event


async def test_user_with_sockets_in_two_processes(backend: Backend, store: FakeStore) -> None:
    """Online until the last socket anywhere closes; offline announced once, whoever notices."""
    notifier = RecordingNotifier()
    one = await backend.presence(store, notifier, process_id="p1")
    two = await backend.presence(store, notifier, process_id="p2")
    await one.socket_opened("u1", "s1")
    await two.socket_opened("u1", "s1b")
    await two.socket_opened("u2", "s2")
    assert notifier.changes == [("u1", "online"), ("u2", "online")]
    assert await one.count_online() == 2 and await two.count_online() == 2
    await one.socket_closed("u1", "s1")
    assert await one.is_online("u1") and await two.is_online("u1")
    await two.socket_closed("u1", "s1b")
    await eventually(lambda: notifier.of("u1") == ["online", "offline"])
    assert not await one.is_online("u1") and not await two.is_online("u1")
    # later sweeps and timers of both processes find nothing more to announce
    await asyncio.sleep(2 * GRACE + 2 * REFRESH)
    await one.sweep()
    await two.sweep()
    assert notifier.of("u1") == ["online", "offline"]
    assert await two.is_online("u2")


async def test_offline_is_announced_once_when_last_sockets_close_everywhere_together(
    backend: Backend, store: FakeStore
) -> None:
    notifier = RecordingNotifier()
    one = await backend.presence(store, notifier, process_id="p1")
    two = await backend.presence(store, notifier, process_id="p2")
    for round_ in range(3):
        await asyncio.gather(one.socket_opened("u1", f"a{round_}"), two.socket_opened("u1", f"b{round_}"))
        await asyncio.gather(one.socket_closed("u1", f"a{round_}"), two.socket_closed("u1", f"b{round_}"))
        await eventually(lambda r=round_: notifier.of("u1") == ["online", "offline"] * (r + 1))
    await asyncio.sleep(2 * GRACE)
    assert notifier.of("u1") == ["online", "offline"] * 3


# presence across processes that stop --------------------------------------------------------------------------------

CHILD = """
import asyncio, sys
from redis.asyncio import Redis
from models.notifier import Notifier
from models.presence import PresenceService

class NoUsers:
    async def get_user(self, user_id):
        return None

async def main():
    presence = PresenceService(NoUsers(), Notifier(), 1.0, Redis.from_url(sys.argv[1]), "child", refresh_interval=0.1)
    await presence.socket_opened("u1", "s1")
    await presence.socket_opened("u2", "s2")
    await presence.socket_closed("u2", "s2")  # u2 is within their grace period when the process dies
    print("ready", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_sockets_of_a_dead_process_are_forgotten(redis_only: Backend, store: FakeStore) -> None:
    assert redis_only.url is not None
    notifier = RecordingNotifier()
    survivor = await redis_only.presence(store, notifier, process_id="survivor")
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, redis_only.url, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        async with asyncio.timeout(20):
            assert (await child.stdout.readline()).strip() == b"ready"
        assert await survivor.is_online("u1")
        assert await survivor.is_online("u2")
    finally:
        child.kill()
        await child.communicate()
    # the survivor notices the missing heartbeat, forgets the sockets, and both go offline
    await eventually(lambda: notifier.of("u1") == ["offline"] and notifier.of("u2") == ["offline"])
    assert not await survivor.is_online("u1") and not await survivor.is_online("u2")
    assert store.users["u1"].last_seen is not None and store.users["u2"].last_seen is not None
    client = redis_only.client()
    assert not await client.exists("whatschat:process:child", "whatschat:presence:u1", "whatschat:presence:u2")
    assert await client.smembers("whatschat:processes") == {b"survivor"}
    await survivor.sweep()
    assert notifier.changes == [("u1", "offline"), ("u2", "offline")]


async def test_close_removes_the_process_and_others_announce_its_users(redis_only: Backend, store: FakeStore) -> None:
    notifier = RecordingNotifier()
    leaving = await redis_only.presence(store, notifier, process_id="leaving")
    staying = await redis_only.presence(store, notifier, process_id="staying")
    await leaving.socket_opened("u1", "s1")
    await leaving.socket_opened("u2", "s2")
    await staying.socket_opened("u2", "s2")
    await leaving.close()
    client = redis_only.client()
    assert not await client.exists("whatschat:process:leaving", "whatschat:alive:leaving")
    assert await client.smembers("whatschat:processes") == {b"staying"}
    await eventually(lambda: notifier.of("u1") == ["online", "offline"])
    assert await staying.is_online("u2")
    assert notifier.of("u2") == ["online"]


async def test_a_stalled_process_puts_its_sockets_back(redis_only: Backend, store: FakeStore) -> None:
    """Taken for dead (no heartbeat for a while) and swept, a live process restores its sockets."""
    notifier = RecordingNotifier()
    stalled = await redis_only.presence(store, notifier, grace=LONG_GRACE, process_id="stalled")
    other = await redis_only.presence(store, notifier, grace=LONG_GRACE, process_id="other")
    await stalled.socket_opened("u1", "s1")
    client = redis_only.client()
    await client.delete("whatschat:alive:stalled")
    await other.sweep()
    assert not await client.exists("whatschat:presence:u1")  # swept; within the grace period, still online
    assert await other.is_online("u1")
    await eventually(lambda: client.sismember("whatschat:presence:u1", "stalled:s1"))
    assert notifier.of("u1") == ["online"]  # back within the grace period: nobody saw them leave
    await stalled.socket_closed("u1", "s1")
    assert not await client.exists("whatschat:presence:u1")


async def test_a_socket_closed_while_its_open_is_in_flight_is_not_left_behind(
    backend: Backend, store: FakeStore
) -> None:
    notifier = RecordingNotifier()
    presence = await backend.presence(store, notifier)
    await asyncio.gather(presence.socket_opened("u1", "s1"), presence.socket_closed("u1", "s1"))
    await eventually(lambda: notifier.of("u1") == ["online", "offline"])
    assert not await presence.is_online("u1")
    assert await presence.count_online() == 0


async def test_a_close_redis_missed_is_retried(redis_only: Backend, store: FakeStore) -> None:
    notifier = RecordingNotifier()
    presence = await redis_only.presence(store, notifier)
    await presence.socket_opened("u1", "s1")
    close_script, failures = presence._close, []

    async def failing_once(**kwargs: Any) -> Any:
        if not failures:
            failures.append(kwargs)
            raise redis.ConnectionError("Redis is away")
        return await close_script(**kwargs)

    presence._close = failing_once  # type: ignore[method-assign]
    await presence.socket_closed("u1", "s1")  # logged, not raised: the socket is gone all the same
    assert failures
    await eventually(lambda: notifier.of("u1") == ["online", "offline"])  # the heartbeat retried it
