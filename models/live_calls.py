"""Where live calls are kept: in this process, or in Redis so several processes share them.

`CallService` runs the state machine; a registry holds what it needs between
requests: each live call (ringing or ongoing) with the invitees it must not
tell about it, which user is busy in which call, and when each ringing call
times out. Every change of a call happens under that call's lock:

    async with live.lock(call_id) as lock:
        entry = await live.get(call_id)      # read
        ...                                  # modify a copy
        await live.commit(lock, entry)       # write: the call, busy marks, ring deadline

`commit` derives the busy marks from the call itself: a participant still
`invited` or `answered` stays busy, everyone else is freed (a mark is only
removed while it still names this call), and a call that is over is dropped
along with its ring deadline. Ring deadlines are claimed once by `claim_due`,
by whichever process polls first.

`MemoryLiveCalls` is one process's dictionaries. `RedisLiveCalls` keeps
`<prefix>call:<id>` (the live call as JSON), `<prefix>busy:<uid>` (-> call id),
`<prefix>ring` (a sorted set: score = deadline in ms of the Redis clock, member =
call id) and `<prefix>lock:<id>` (`SET NX PX` with a random token, released by
compare-and-delete). Writes run as Lua scripts that first check the lock token,
so a process whose lock lapsed cannot overwrite a newer state.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from models.documents import Call, CallParticipant
from models.errors import CallFailed

LIVE = ("ringing", "ongoing")
IN_CALL = ("invited", "answered")  # participant states that keep a user busy


@dataclass(slots=True)
class LiveCall:
    """A live call and the invitees who blocked the caller (they are never told of it)."""

    call: Call
    muted: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class CallLock:
    """Proof of holding one call's lock; writes check it."""

    call_id: str
    token: str


class LockLost(CallFailed):
    """The lock lapsed (held past its lease) before the write: nothing was written."""

    default_message = "The call changed meanwhile; try again"


def encode(entry: LiveCall) -> bytes:
    return orjson.dumps({"call": asdict(entry.call), "muted": sorted(entry.muted)})


def decode(raw: bytes | str) -> LiveCall:
    data = orjson.loads(raw)
    call = dict(data["call"])
    call["participants"] = [CallParticipant(**p) for p in call["participants"]]
    return LiveCall(Call(**call), frozenset(data.get("muted") or ()))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class LiveCalls(ABC):
    """The registry of live calls `CallService` works on."""

    poll_interval: float = 0.1  # how often the ring loop asks `claim_due`

    @abstractmethod
    async def get(self, call_id: str) -> LiveCall | None:
        """A copy of the live call, or None when it is over or unknown."""

    @abstractmethod
    async def get_many(self, call_ids: Sequence[str]) -> dict[str, Call]:
        """The live ones among `call_ids` (copies)."""

    @abstractmethod
    async def call_of(self, user_id: str) -> str | None:
        """The live call the user rings in or talks in."""

    @abstractmethod
    async def busy(self, user_ids: Iterable[str]) -> set[str]:
        """Which of the users are in a live call (or one being started)."""

    @abstractmethod
    def lock(self, call_id: str) -> Any:
        """`async with live.lock(call_id) as lock:` -- one holder per call across the registry's users."""

    @abstractmethod
    async def claim(self, lock: CallLock, user_ids: Sequence[str]) -> list[str]:
        """Mark each free user busy in `lock.call_id`, at once; answer those claimed (the rest are busy)."""

    @abstractmethod
    async def release(self, lock: CallLock, user_ids: Iterable[str]) -> None:
        """Undo claims of a call that did not start: free the users whose mark still names it."""

    @abstractmethod
    async def commit(self, lock: CallLock, entry: LiveCall, ring_after: float | None = None) -> None:
        """Write the call under its lock (see the module doc); `ring_after` seconds schedules its ring timeout.

        Raise `LockLost` (and write nothing) when the lock is no longer held.
        """

    @abstractmethod
    async def schedule(self, call_id: str, after: float) -> None:
        """(Re)schedule a ring timeout, e.g. after handling a claimed one failed."""

    @abstractmethod
    async def claim_due(self, limit: int = 100) -> list[str]:
        """Take the calls whose ring timeout is due; each is handed to exactly one caller."""


def _over_and_freed(entry: LiveCall) -> tuple[bool, list[str], bool]:
    """(call over, users to free, someone still ringing)."""
    call = entry.call
    over = call.status not in LIVE
    freed = [p.user_id for p in call.participants if over or p.status not in IN_CALL]
    ringing = not over and any(p.status == "invited" for p in call.participants)
    return over, freed, ringing


class MemoryLiveCalls(LiveCalls):
    """Live calls of this process only (one process per deployment)."""

    poll_interval = 0.05

    def __init__(self) -> None:
        self._calls: dict[str, bytes] = {}  # call id -> encoded LiveCall (copies in and out, as Redis does)
        self._busy: dict[str, str] = {}  # user id -> call id
        self._ring: dict[str, float] = {}  # call id -> deadline (monotonic seconds)
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # call id -> (lock, [holders and waiters])
        self._held: dict[str, str] = {}  # call id -> token of the holder

    async def get(self, call_id: str) -> LiveCall | None:
        raw = self._calls.get(call_id)
        return decode(raw) if raw is not None else None

    async def get_many(self, call_ids: Sequence[str]) -> dict[str, Call]:
        return {cid: decode(self._calls[cid]).call for cid in call_ids if cid in self._calls}

    async def call_of(self, user_id: str) -> str | None:
        return self._busy.get(user_id)

    def _taken(self, user_id: str, call_id: str | None = None) -> bool:
        current = self._busy.get(user_id)
        return current is not None and current != call_id and (current in self._calls or current in self._held)

    async def busy(self, user_ids: Iterable[str]) -> set[str]:
        return {uid for uid in user_ids if self._taken(uid)}

    @asynccontextmanager
    async def lock(self, call_id: str) -> AsyncIterator[CallLock]:
        lock, users = self._locks.setdefault(call_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                token = secrets.token_hex(8)
                self._held[call_id] = token
                try:
                    yield CallLock(call_id, token)
                finally:
                    self._held.pop(call_id, None)
        finally:
            users[0] -= 1
            if not users[0]:
                self._locks.pop(call_id, None)

    def _check(self, lock: CallLock) -> None:
        if self._held.get(lock.call_id) != lock.token:
            raise LockLost()

    async def claim(self, lock: CallLock, user_ids: Sequence[str]) -> list[str]:
        self._check(lock)
        claimed = [uid for uid in user_ids if not self._taken(uid, lock.call_id)]
        for uid in claimed:
            self._busy[uid] = lock.call_id
        return claimed

    async def release(self, lock: CallLock, user_ids: Iterable[str]) -> None:
        for uid in user_ids:
            if self._busy.get(uid) == lock.call_id:
                del self._busy[uid]

    async def commit(self, lock: CallLock, entry: LiveCall, ring_after: float | None = None) -> None:
        self._check(lock)
        over, freed, ringing = _over_and_freed(entry)
        if over:
            self._calls.pop(lock.call_id, None)
        else:
            self._calls[lock.call_id] = encode(entry)
        await self.release(lock, freed)
        if not ringing:
            self._ring.pop(lock.call_id, None)
        elif ring_after is not None:
            self._ring[lock.call_id] = time.monotonic() + ring_after

    async def schedule(self, call_id: str, after: float) -> None:
        self._ring[call_id] = time.monotonic() + after

    async def claim_due(self, limit: int = 100) -> list[str]:
        now = time.monotonic()
        due = sorted((deadline, cid) for cid, deadline in self._ring.items() if deadline <= now)[:limit]
        for _, cid in due:
            del self._ring[cid]
        return [cid for _, cid in due]


# Lua: every script that writes checks the lock token first (KEYS[1] = lock key, ARGV[1] = token).
_NOW_MS = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)"

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# a busy mark counts while the call it names is live or being started (its lock is held)
_TAKEN = """
local function taken(prefix, uid, call_id)
  local current = redis.call('GET', prefix .. 'busy:' .. uid)
  if not current or current == call_id then return false end
  return redis.call('EXISTS', prefix .. 'call:' .. current) == 1
    or redis.call('EXISTS', prefix .. 'lock:' .. current) == 1
end
"""

# ARGV: prefix, user ids...
_BUSY = (
    _TAKEN
    + """
local out = {}
for i = 2, #ARGV do
  if taken(ARGV[1], ARGV[i], false) then table.insert(out, ARGV[i]) end
end
return out
"""
)

# KEYS: lock; ARGV: token, call id, prefix, user ids...
_CLAIM = (
    _TAKEN
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local out = {}
for i = 4, #ARGV do
  if not taken(ARGV[3], ARGV[i], ARGV[2]) then
    redis.call('SET', ARGV[3] .. 'busy:' .. ARGV[i], ARGV[2])
    table.insert(out, ARGV[i])
  end
end
return out
"""
)

# ARGV: call id, prefix, user ids...
_RELEASE = """
for i = 3, #ARGV do
  local key = ARGV[2] .. 'busy:' .. ARGV[i]
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 1
"""

# KEYS: lock, call doc, ring; ARGV: token, call id, prefix, doc ('' = over), ring ms ('' = keep),
# ringing ('1'/'0'), user ids to free...
_COMMIT = (
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[4] == '' then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], ARGV[4]) end
for i = 7, #ARGV do
  local key = ARGV[3] .. 'busy:' .. ARGV[i]
  if redis.call('GET', key) == ARGV[2] then redis.call('DEL', key) end
end
if ARGV[6] == '0' then
  redis.call('ZREM', KEYS[3], ARGV[2])
elseif ARGV[5] ~= '' then
  """
    + _NOW_MS
    + """
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[2])
end
return 1
"""
)

# KEYS: ring; ARGV: call id, ms
_SCHEDULE = (
    _NOW_MS
    + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)

# KEYS: ring; ARGV: limit. Due members leave the set in the same step that reads them: one taker each.
_CLAIM_DUE = (
    _NOW_MS
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(due) do redis.call('ZREM', KEYS[1], id) end
return due
"""
)


class RedisLiveCalls(LiveCalls):
    """Live calls shared by every process on one Redis (`redis.asyncio.Redis`, either response mode).

    The scripts touch keys derived from their arguments, so this needs a single Redis (not a cluster).
    """

    poll_interval = 0.15

    def __init__(self, redis: Any, prefix: str = "whatschat:", lock_ttl: float = 5.0, lock_wait: float = 10.0) -> None:
        self.redis = redis
        self.prefix = prefix
        self.lock_ms = int(lock_ttl * 1000)
        self.lock_wait = lock_wait
        self._unlock = redis.register_script(_UNLOCK)
        self._busy = redis.register_script(_BUSY)
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)
        self._commit = redis.register_script(_COMMIT)
        self._schedule = redis.register_script(_SCHEDULE)
        self._claim_due = redis.register_script(_CLAIM_DUE)

    def _key(self, kind: str, ident: str = "") -> str:
        return f"{self.prefix}{kind}:{ident}" if ident else f"{self.prefix}{kind}"

    async def get(self, call_id: str) -> LiveCall | None:
        raw = await self.redis.get(self._key("call", call_id))
        return decode(raw) if raw is not None else None

    async def get_many(self, call_ids: Sequence[str]) -> dict[str, Call]:
        if not call_ids:
            return {}
        raws = await self.redis.mget([self._key("call", cid) for cid in call_ids])
        return {cid: decode(raw).call for cid, raw in zip(call_ids, raws, strict=True) if raw is not None}

    async def call_of(self, user_id: str) -> str | None:
        raw = await self.redis.get(self._key("busy", user_id))
        return _text(raw) if raw is not None else None

    async def busy(self, user_ids: Iterable[str]) -> set[str]:
        ids = list(user_ids)
        if not ids:
            return set()
        return {_text(uid) for uid in await self._busy(args=[self.prefix, *ids])}

    @asynccontextmanager
    async def lock(self, call_id: str) -> AsyncIterator[CallLock]:
        key, token = self._key("lock", call_id), secrets.token_hex(16)
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + self.lock_wait, 0.002
        while not await self.redis.set(key, token, nx=True, px=self.lock_ms):
            if loop.time() > deadline:
                raise CallFailed("The call is busy changing; try again")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)
        try:
            yield CallLock(call_id, token)
        finally:
            # shielded: a cancelled holder still lets go at once instead of after the lease
            await asyncio.shield(self._unlock(keys=[key], args=[token]))

    async def claim(self, lock: CallLock, user_ids: Sequence[str]) -> list[str]:
        if not user_ids:
            return []
        claimed = await self._claim(
            keys=[self._key("lock", lock.call_id)], args=[lock.token, lock.call_id, self.prefix, *user_ids]
        )
        if claimed is None:
            raise LockLost()
        return [_text(uid) for uid in claimed]

    async def release(self, lock: CallLock, user_ids: Iterable[str]) -> None:
        ids = list(user_ids)
        if ids:
            await self._release(args=[lock.call_id, self.prefix, *ids])

    async def commit(self, lock: CallLock, entry: LiveCall, ring_after: float | None = None) -> None:
        over, freed, ringing = _over_and_freed(entry)
        done = await self._commit(
            keys=[self._key("lock", lock.call_id), self._key("call", lock.call_id), self._key("ring")],
            args=[
                lock.token,
                lock.call_id,
                self.prefix,
                b"" if over else encode(entry),
                "" if ring_after is None else str(max(0, int(ring_after * 1000))),
                "1" if ringing else "0",
                *freed,
            ],
        )
        if not done:
            raise LockLost()

    async def schedule(self, call_id: str, after: float) -> None:
        await self._schedule(keys=[self._key("ring")], args=[call_id, str(max(0, int(after * 1000)))])

    async def claim_due(self, limit: int = 100) -> list[str]:
        return [_text(cid) for cid in await self._claim_due(keys=[self._key("ring")], args=[limit])]
