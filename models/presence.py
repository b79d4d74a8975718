"""Who is online, how that looks to others, and who is told when it changes.

A user is online from their first live authenticated socket until
`presence.grace_period` seconds after the last one closes, across devices, so a
page reload or a brief network drop does not flicker them offline. What others
see is `offline` when the user is offline, chose `invisible`, or blocked the
viewer; the user themself sees their own setting while online.

Changes go out as `user_status_changed {userId, status, lastSeen}` to the users
who share a chat with the user and have not been blocked by them, never to
everyone.

Without Redis the counts live in this process. With Redis (`redis=`), every
process shares them; the keys (prefix `redis.key_prefix`, by default `whatschat:`):

- `presence:<uid>`: set of `<process id>:<socket id>`, the user's live sockets anywhere;
- `online`: set of the user ids whose `presence:<uid>` is not empty (`count_online`);
- `leaving:<uid>`: a flag with a time to live of the grace period, set when the last socket
  anywhere closed; the user is online while `presence:<uid>` is not empty or this exists;
- `leaving-due`: sorted set of user id -> when (ms, Redis clock) their grace period ends;
- `process:<pid>`: hash socket id -> user id of the sockets of one process;
- `alive:<pid>`: heartbeat of a process, expiring after 3 refresh intervals;
- `processes`: set of the process ids that may have sockets.

Every change is one Lua script, so it is atomic. The first socket anywhere announces
online. The process whose close empties `presence:<uid>` runs the last-socket hooks,
sets `leaving:<uid>` and `leaving-due`, and wakes up after the grace period: if
`presence:<uid>` is still empty and the user is still due, one script removes the
user from `leaving-due` and `leaving:<uid>` and that process alone stores last seen and
announces offline (the removal is the claim: whoever runs it second finds nothing). A
socket opened within the grace period removes both, so nobody announces anything.

A process refreshes `alive:<pid>` every `refresh_interval` seconds and then sweeps:
for every process in `processes` whose `alive:` key is gone (it died, or stalled for
3 intervals), one script removes its sockets from `presence:*` and `process:<pid>`,
treating each user left without sockets as if their last socket had just closed
(hooks run and the grace period starts in the sweeping process); then it claims the
users in `leaving-due` whose grace period ended (their process may have died during
it) and announces them offline. A process that stalled and was swept puts its live
sockets back at its next heartbeat; a close that Redis missed (it was down) is retried
at the next heartbeat too. `close()` stops the background task and removes
this process's sockets the same way; the remaining processes (or the next one to
start) announce those users offline. The scripts build key names from the prefix, so
they need one Redis server (not a cluster).
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from models.clock import now_iso
from models.documents import User
from models.events import Event
from models.notifier import Notifier
from models.store.base import Store
from models.views import StatusChange

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)
GoneHook = Callable[[str], Awaitable[None]]

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: presence:<uid>, online, process:<pid>, leaving:<uid>, leaving-due; ARGV: member, uid, socket id
# -> {1 first socket anywhere (announce) | 2 back within the grace period | 0 not the first, users online}
_OPEN = """
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[2])
local first = 0
if added == 1 and redis.call('SCARD', KEYS[1]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[2])
  first = 1
  if redis.call('DEL', KEYS[4]) + redis.call('ZREM', KEYS[5], ARGV[2]) > 0 then first = 2 end
end
return {first, redis.call('SCARD', KEYS[2])}
"""

# KEYS: as _OPEN; ARGV: member, uid, socket id, grace (ms) -> {1 last socket anywhere | 0, users online}
_CLOSE = (
    _NOW_MS
    + """
local removed = redis.call('SREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[3])
local last = 0
if removed == 1 and redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[2])
  redis.call('SET', KEYS[4], '1', 'PX', ARGV[4])
  redis.call('ZADD', KEYS[5], string.format('%d', now + tonumber(ARGV[4])), ARGV[2])
  last = 1
end
return {last, redis.call('SCARD', KEYS[2])}
"""
)

# KEYS: presence:<uid>, leaving:<uid>, leaving-due; ARGV: uid
# -> 0 claimed: announce offline | -1 nothing to do | ms until the grace period ends
_FINISH = (
    _NOW_MS
    + """
local due = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not due then return -1 end
if redis.call('SCARD', KEYS[1]) > 0 then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return -1
end
local left = tonumber(due) - now
if left > 0 then return left end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[2])
return 0
"""
)

# KEYS: leaving-due; ARGV: prefix -> the users whose grace period ended, claimed (announce offline)
_CLAIM_DUE = (
    _NOW_MS
    + """
local gone = {}
for _, uid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now), 'LIMIT', 0, 500)) do
  redis.call('ZREM', KEYS[1], uid)
  if redis.call('SCARD', ARGV[1] .. 'presence:' .. uid) == 0 then
    redis.call('DEL', ARGV[1] .. 'leaving:' .. uid)
    table.insert(gone, uid)
  end
end
return gone
"""
)

# KEYS: process:<pid>, online, leaving-due, processes, alive:<pid>; ARGV: prefix, pid, grace (ms)
# -> the users left without sockets (their grace period has started)
_FORGET_PROCESS = (
    _NOW_MS
    + """
if redis.call('EXISTS', KEYS[5]) == 1 then return {} end
local emptied = {}
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local sid, uid = entries[i], entries[i + 1]
  local key = ARGV[1] .. 'presence:' .. uid
  if redis.call('SREM', key, ARGV[2] .. ':' .. sid) == 1 and redis.call('SCARD', key) == 0 then
    redis.call('SREM', KEYS[2], uid)
    redis.call('SET', ARGV[1] .. 'leaving:' .. uid, '1', 'PX', ARGV[3])
    redis.call('ZADD', KEYS[3], string.format('%d', now + tonumber(ARGV[3])), uid)
    table.insert(emptied, uid)
  end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[4], ARGV[2])
return emptied
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def default_process_id() -> str:
    """Unique per running process: host, pid and a random part (pids are reused)."""
    return f"{platform.node() or 'host'}-{os.getpid()}-{secrets.token_hex(4)}"


class PresenceService:
    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        grace_period: float,
        redis: Redis | None = None,
        process_id: str | None = None,
        *,
        prefix: str = "whatschat:",
        refresh_interval: float = 5.0,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.grace_period = grace_period
        # user id -> ids of their live sockets (in this process); a list, as a user has one or a few:
        # 64 bytes where a set takes 216, for every online user
        self._sockets: dict[str, list[str]] = {}
        self._leaving: dict[str, asyncio.Task[None]] = {}  # users within their grace period (timers here)
        self._on_last_socket: list[GoneHook] = []
        self.redis = redis
        self.process_id = process_id or default_process_id()
        self.prefix = prefix
        self.refresh_interval = refresh_interval
        self._online_count = 0  # users with live sockets anywhere, as of the last Redis answer
        self._heartbeat: asyncio.Task[None] | None = None
        self._stopping = False  # cancelling is not enough: Python 3.11's wait_for (in redis-py) may swallow it
        self._registered = False
        self._opening: dict[str, asyncio.Event] = {}  # socket id -> set once its open reached Redis
        self._unclosed: set[tuple[str, str]] = set()  # closes Redis missed (it was down): retried
        if redis is not None:
            self._open = redis.register_script(_OPEN)
            self._close = redis.register_script(_CLOSE)
            self._finish = redis.register_script(_FINISH)
            self._claim_due = redis.register_script(_CLAIM_DUE)
            self._forget_process = redis.register_script(_FORGET_PROCESS)

    # keys
    def _k(self, name: str) -> str:
        return self.prefix + name

    def _user_keys(self, user_id: str) -> list[str]:
        return [
            self._k(f"presence:{user_id}"),
            self._k("online"),
            self._k(f"process:{self.process_id}"),
            self._k(f"leaving:{user_id}"),
            self._k("leaving-due"),
        ]

    @property
    def _grace_ms(self) -> int:
        return max(1, round(self.grace_period * 1000))

    def on_last_socket_closed(self, hook: GoneHook) -> None:
        """Run `hook(user_id)` when a user's last socket closes (calls end their part at once)."""
        self._on_last_socket.append(hook)

    # reading
    async def is_online(self, user_id: str) -> bool:
        return user_id in await self.online_among([user_id])

    async def online_among(self, user_ids: Iterable[str]) -> set[str]:
        """Those of `user_ids` who are online (one round trip to Redis)."""
        ids = list(dict.fromkeys(user_ids))
        if self.redis is None:
            return {uid for uid in ids if uid in self._sockets or uid in self._leaving}
        if not ids:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for uid in ids:
                pipe.exists(self._k(f"presence:{uid}"), self._k(f"leaving:{uid}"))
            found = await pipe.execute()
        return {uid for uid, n in zip(ids, found, strict=True) if n}

    @property
    def online_users(self) -> int:
        """Users online here (without Redis), or with live sockets anywhere as last seen in Redis."""
        if self.redis is None:
            return len(self._sockets.keys() | self._leaving.keys())
        return self._online_count

    async def count_online(self) -> int:
        """`online_users`, read from Redis now when there is one."""
        if self.redis is not None:
            self._online_count = await self.redis.scard(self._k("online"))
        return self.online_users

    @staticmethod
    def presence_seen(user: User, viewer_id: str | None, online: bool, hidden_from_viewer: bool = False) -> str:
        """The presence `viewer_id` may see of `user`, who is `online` or not."""
        if viewer_id == user.id:
            return user.presence_setting if online else "offline"
        if hidden_from_viewer or user.presence_setting == "invisible" or not online:
            return "offline"
        return user.presence_setting

    async def presence_for(self, user: User, viewer_id: str | None, hidden_from_viewer: bool = False) -> str:
        """The presence `viewer_id` may see of `user`."""
        return self.presence_seen(user, viewer_id, await self.is_online(user.id), hidden_from_viewer)

    # sockets
    async def socket_opened(self, user_id: str, socket_id: str) -> None:
        """Count a live socket; the first one (outside a grace period) makes the user online."""
        if self.redis is not None:
            await self._socket_opened_shared(user_id, socket_id)
            return
        sockets = self._add_socket(user_id, socket_id)
        if len(sockets) > 1:
            return
        leaving = self._leaving.pop(user_id, None)
        if leaving is not None:
            leaving.cancel()  # back within the grace period: nobody saw them leave
            return
        await self.announce(user_id)

    def _add_socket(self, user_id: str, socket_id: str) -> list[str]:
        """The user's live sockets here, `socket_id` among them (once, however often it is counted)."""
        sockets = self._sockets.get(user_id)
        if sockets is None:
            sockets = self._sockets[user_id] = [socket_id]
        elif socket_id not in sockets:
            sockets.append(socket_id)
        return sockets

    async def socket_closed(self, user_id: str, socket_id: str) -> None:
        """Forget a socket (closing one twice, or one never counted, changes nothing)."""
        sockets = self._sockets.get(user_id)
        if sockets is None or socket_id not in sockets:
            return
        sockets.remove(socket_id)
        remaining = bool(sockets)
        if not remaining:
            del self._sockets[user_id]
        if self.redis is not None:
            await self._socket_closed_shared(user_id, socket_id)
            return
        if remaining:
            return
        # the grace period starts before the hooks run, as the Redis path sets `leaving:` before
        # them: a socket opened while they run finds the user leaving and cancels it unseen
        previous = self._leaving.pop(user_id, None)
        if previous is not None:
            previous.cancel()
        self._leaving[user_id] = asyncio.ensure_future(self._go_offline_later(user_id))
        await self._last_socket_closed(user_id)

    async def _last_socket_closed(self, user_id: str) -> None:
        """Run the hooks in order, stopping once a socket of the user opened here (they are back)."""
        for hook in self._on_last_socket:
            if user_id in self._sockets:
                return
            try:
                await hook(user_id)
            except Exception:
                log.exception("last-socket hook failed")

    async def _go_offline_later(self, user_id: str) -> None:
        """Without Redis: offline after the grace period, unless a socket of the user opened meanwhile."""
        await asyncio.sleep(self.grace_period)
        if self._leaving.get(user_id) is not asyncio.current_task():
            return
        del self._leaving[user_id]
        if user_id in self._sockets:  # back: checked first, as `_FINISH` does on the Redis path
            return
        await self.store.update_user(user_id, {"last_seen": now_iso()})
        if user_id in self._sockets:
            # a socket opened during the write, after the grace period: its open announced
            # online, which an announcement now would only repeat
            return
        await self.announce(user_id)

    async def _went_offline(self, user_id: str) -> None:
        await self.store.update_user(user_id, {"last_seen": now_iso()})
        await self.announce(user_id)

    # sockets shared through Redis
    async def _socket_opened_shared(self, user_id: str, socket_id: str) -> None:
        assert self.redis is not None
        await self.start()
        self._add_socket(user_id, socket_id)
        # a close of this socket arriving meanwhile waits, so that Redis never sees it before the open
        opened = self._opening[socket_id] = asyncio.Event()
        try:
            first, self._online_count = await self._open(
                keys=self._user_keys(user_id), args=[f"{self.process_id}:{socket_id}", user_id, socket_id]
            )
        finally:
            del self._opening[socket_id]
            opened.set()
        if first == 1:
            await self.announce(user_id)

    async def _socket_closed_shared(self, user_id: str, socket_id: str) -> None:
        opening = self._opening.get(socket_id)
        if opening is not None:
            await opening.wait()
        try:
            last, self._online_count = await self._close(
                keys=self._user_keys(user_id),
                args=[f"{self.process_id}:{socket_id}", user_id, socket_id, self._grace_ms],
            )
        except Exception:
            log.warning("presence: could not record a closed socket in Redis; retrying later", exc_info=True)
            self._unclosed.add((user_id, socket_id))
            return
        if last == 1:
            await self._grace_started(user_id)

    async def _grace_started(self, user_id: str) -> None:
        """The user's last socket anywhere is gone: hooks now, offline after the grace period."""
        await self._last_socket_closed(user_id)
        previous = self._leaving.pop(user_id, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.ensure_future(self._finish_later(user_id))
        self._leaving[user_id] = task
        task.add_done_callback(lambda t: self._leaving.pop(user_id, None) if self._leaving.get(user_id) is t else None)

    async def _finish_later(self, user_id: str) -> None:
        delay = self.grace_period
        while not self._stopping:
            await asyncio.sleep(delay)
            left = await self._finish(
                keys=[self._k(f"presence:{user_id}"), self._k(f"leaving:{user_id}"), self._k("leaving-due")],
                args=[user_id],
            )
            if left < 0 or self._stopping:
                return
            if left == 0:
                await self._went_offline(user_id)
                return
            delay = left / 1000

    # the life of this process in Redis
    async def start(self) -> None:
        """Register this process and start its heartbeat (done by the first socket if not before)."""
        if self.redis is None or self._heartbeat is not None:
            return
        self._stopping = False
        self._heartbeat = asyncio.ensure_future(self._beat_forever())
        try:
            await self._beat()
        except Exception:  # Redis down: the heartbeat keeps trying
            log.warning("presence: could not register this process in Redis", exc_info=True)

    async def _beat(self) -> None:
        """Refresh `alive:<pid>`; if this process had been swept as dead, put its sockets back."""
        assert self.redis is not None
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._k(f"alive:{self.process_id}"), "1", px=max(1, round(self.refresh_interval * 3000)))
            pipe.sadd(self._k("processes"), self.process_id)
            _, added = await pipe.execute()
        if added and self._registered:
            log.warning("presence: this process was taken for dead; restoring its sockets")
            for user_id, sockets in list(self._sockets.items()):
                for socket_id in list(sockets):
                    await self._socket_opened_shared(user_id, socket_id)
        self._registered = True

    async def _beat_forever(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self._beat()
                for user_id, socket_id in list(self._unclosed):
                    self._unclosed.discard((user_id, socket_id))
                    await self._socket_closed_shared(user_id, socket_id)
                await self.sweep()
            except Exception:
                log.warning("presence: heartbeat or sweep failed", exc_info=True)

    async def sweep(self) -> None:
        """Forget the sockets of dead processes, then announce offline whoever's grace period ended."""
        if self.redis is None:
            return
        for raw in await self.redis.smembers(self._k("processes")):
            pid = _text(raw)
            if pid == self.process_id or await self.redis.exists(self._k(f"alive:{pid}")):
                continue
            log.info("presence: forgetting the sockets of process %s, which stopped", pid)
            for user_id in await self._forget(pid):
                await self._grace_started(user_id)
        for raw in await self._claim_due(keys=[self._k("leaving-due")], args=[self.prefix]):
            try:  # claimed: nobody else will announce this user
                await self._went_offline(_text(raw))
            except Exception:
                log.exception("presence: announcing %s offline failed", _text(raw))
        await self.count_online()

    async def _forget(self, pid: str) -> list[str]:
        keys = [
            self._k(f"process:{pid}"),
            self._k("online"),
            self._k("leaving-due"),
            self._k("processes"),
            self._k(f"alive:{pid}"),
        ]
        return [_text(uid) for uid in await self._forget_process(keys=keys, args=[self.prefix, pid, self._grace_ms])]

    # announcements
    async def announce(self, user_id: str, connection_change: bool = True) -> None:
        """Tell the user's audience how they look now.

        An invisible user coming or going looks `offline` before and after: no event.
        """
        user = await self.store.get_user(user_id)
        if user is None or (connection_change and user.presence_setting == "invisible"):
            return
        audience = await self.audience(user_id)
        if not audience:
            return
        status = await self.presence_for(user, None)
        last_seen = None if user.presence_setting == "invisible" else user.last_seen
        await self.notifier.to_users(audience, Event.USER_STATUS_CHANGED, StatusChange(user.id, status, last_seen))

    async def audience(self, user_id: str) -> list[str]:
        """Everyone who shares a chat with the user, less those the user blocked."""
        shared = await self.store.shared_chat_user_ids(user_id)
        blocked = set(await self.store.blocked_ids(user_id))
        return [uid for uid in shared if uid not in blocked]

    async def close(self) -> None:
        """Stop the timers and the heartbeat; with Redis, remove this process's sockets."""
        self._stopping = True
        timers = list(self._leaving.values())
        self._leaving.clear()
        for task in timers:
            task.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
        if self.redis is None:
            return
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is None:
            return
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
        self._unclosed.clear()  # forgetting the process below removes those sockets too
        await self.redis.delete(self._k(f"alive:{self.process_id}"))
        await self._forget(self.process_id)
        self._sockets.clear()
        self._registered = False
