"""The domain's `Notifier`, carried out with Socket.IO rooms, in one process or many.

Rooms: `user:<id>` holds every socket of a user, `login:<id>` every socket of
one login, `chat:<id>` every socket of the chat's members. An event goes out on
`/` and on the namespace that carries it (`EVENT_NAMESPACES`), encoded once per
namespace whatever the number of recipients.

With `redis.url` set, Socket.IO runs on `RedisManager`: every emit reaches the
sockets of every process through one Redis pub/sub channel. Joining and leaving
chat rooms and ending logins act on sockets, which python-socketio only knows
in the process that holds them, so the notifier applies such an instruction to
its own sockets and publishes it on the same channel; every other process
applies it to its sockets. One channel keeps the order: a member added to a
group, then the group's next message, arrive at every process in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
import socketio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from handlers.sio.base import chat_room, login_room, user_room
from handlers.sio.fanout import DirectFanoutManager
from handlers.sio.namespaces import EVENT_NAMESPACES, NAMESPACES, ROOT
from models.notifier import Notifier

log = logging.getLogger(__name__)
REVOKED = {"code": "AUTH_001", "message": "This session was signed out"}
INSTRUCTION = "whatschat:rooms"  # the `method` of a room instruction among python-socketio's own messages
# Commands give up fast when Redis is away (one retry, for a pooled connection Redis closed when it
# restarted), so an emit never holds a handler for long. The listener blocks on reads without a timeout.
REDIS_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 2.0,
    "socket_timeout": 2.0,
    "retry": Retry(NoBackoff(), 1),
    "health_check_interval": 15,
}
Instruction = dict[str, Any]


class RedisManager(socketio.AsyncRedisManager, DirectFanoutManager):
    """python-socketio's `AsyncRedisManager`, with its two Redis calls made to survive outages.

    - Publishing never raises into a handler and never makes it wait: messages
      go into a bounded outbox that one task publishes in order. After a
      failure, the outbox is dropped (logged once) for `pause` seconds rather
      than tried message by message against a dead Redis. Sockets on other
      processes miss those events; clients catch up with `sync` (their
      Socket.IO connections are unaffected).
    - The listener reconnects with a backoff that doubles from `min_retry` to
      `max_retry` seconds (upstream grows to 60 s), closing what it opened.
    - An emit addressed to one socket of this process does not go through Redis.
    - Room instructions (`publish_instruction`) share the channel, and so the
      order, of the emits; `on_instruction` applies those of other processes.
    """

    def __init__(
        self,
        url: str,
        channel: str = "whatschat",
        min_retry: float = 0.1,
        max_retry: float = 2.0,
        pause: float = 1.0,
        outbox: int = 10_000,
    ) -> None:
        super().__init__(url, channel=channel, redis_options=dict(REDIS_OPTIONS))
        self.min_retry = min_retry
        self.max_retry = max_retry
        self.pause = pause
        self.dropped = 0  # messages other processes never got: outbox full or Redis away
        self._outbox: asyncio.Queue[Any] = asyncio.Queue(outbox)
        self._sender: asyncio.Task[None] | None = None
        self.on_instruction: Callable[[Instruction], Awaitable[None]] | None = None
        self.subscribed = asyncio.Event()  # set while the listener holds a subscription, for tests and logs
        self._publisher: aioredis.Redis | None = None
        self._listener: tuple[aioredis.Redis, Any] | None = None  # the listener's client and subscription
        self._silent_until = 0.0

    def _client(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(self.redis_url, **self.redis_options)

    def _local(self, sid: Any, namespace: str) -> bool:
        return isinstance(sid, str) and (self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace))

    async def emit(self, event: str, data: Any, namespace: str | None = None, room: Any = None, **kwargs: Any) -> Any:
        room = kwargs.pop("to", None) or room
        if self._local(room, namespace or "/"):  # a socket's own room: it is here
            kwargs["ignore_queue"] = True
        return await super().emit(event, data, namespace=namespace, room=room, **kwargs)

    async def publish_instruction(self, instruction: Instruction) -> None:
        await self._publish({**instruction, "method": INSTRUCTION, "host_id": self.host_id})

    async def _publish(self, data: Any) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_forever())
        try:
            self._outbox.put_nowait(data)
        except asyncio.QueueFull:
            self._drop("the outbox is full")

    def _drop(self, why: str) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.warning("%d event(s) for other processes dropped so far (%s)", self.dropped, why)

    async def _send_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await self._outbox.get()
            try:
                if loop.time() < self._silent_until:
                    self._drop("Redis is away")
                    continue
                if self._publisher is None:
                    self._publisher = self._client()
                await self._publisher.publish(self.channel, self.json.dumps(data))
            except Exception as exc:  # RedisError, OSError: stop trying for a moment
                self._silent_until = loop.time() + self.pause
                self._drop(f"Redis publish failed: {exc}")
            finally:
                self._outbox.task_done()

    async def _listen(self) -> AsyncIterator[Any]:
        """What python-socketio's `_thread` handles, parsed; room instructions are applied here, in order."""
        channel = self.channel.encode()
        delay = self.min_retry
        while True:
            client = self._client()
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            self._listener = (client, pubsub)
            try:
                await pubsub.subscribe(self.channel)
                if delay > self.min_retry:
                    log.warning("Redis answers again: listening on channel %s", self.channel)
                delay = self.min_retry
                self.subscribed.set()
                async for message in pubsub.listen():
                    if message.get("type") != "message" or message.get("channel") != channel:
                        continue
                    try:
                        data = self.json.loads(message["data"])
                    except ValueError:
                        continue
                    if not isinstance(data, dict):
                        continue
                    if data.get("method") == INSTRUCTION:
                        await self._apply(data)
                    else:
                        yield data
            except Exception as exc:  # Redis went away (or never answered): retry, bounded
                level = logging.WARNING if delay == self.min_retry else logging.DEBUG  # once per outage
                log.log(level, "Redis channel %s lost (%s); retrying", self.channel, exc)
            finally:
                self.subscribed.clear()
                self._listener = None
                await _close_quietly(pubsub.aclose(), client.aclose())
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_retry)

    async def _apply(self, data: Instruction) -> None:
        if data.get("host_id") == self.host_id or self.on_instruction is None:
            return  # the publisher applied it to its own sockets already
        try:
            await self.on_instruction(data)
        except Exception:
            log.exception("room instruction %s failed", data.get("op"))

    async def start(self) -> None:
        """Subscribe now, not at the first connection (python-socketio's default)."""
        if not self.server.manager_initialized:
            self.server.manager_initialized = True
            self.initialize()

    async def stop(self, flush: float = 1.0) -> None:
        """Publish what is queued (for at most `flush` seconds), then stop listening and close."""
        if self._sender is not None:
            if not self._sender.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._outbox.join(), flush)
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
            self._sender = None
        thread = getattr(self, "thread", None)
        if thread is not None:
            thread.cancel()
            await asyncio.gather(thread, return_exceptions=True)
        if self._listener is not None:  # cancelled while python-socketio handled a message: close it here
            client, pubsub = self._listener
            self._listener = None
            await _close_quietly(pubsub.aclose(), client.aclose())
        if self._publisher is not None:
            await _close_quietly(self._publisher.aclose())
            self._publisher = None


async def _close_quietly(*closing: Awaitable[Any]) -> None:
    for job in closing:
        try:
            await job
        except Exception:  # closing a connection to a Redis that is gone
            log.debug("closing a Redis connection failed", exc_info=True)


class SocketNotifier(Notifier):
    def __init__(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio
        manager = sio.manager
        self.bus = manager if isinstance(manager, RedisManager) else None
        if self.bus is not None:
            self.bus.on_instruction = self.apply

    def _namespaces(self, event: str) -> tuple[str, ...]:
        extra = EVENT_NAMESPACES.get(event)
        return (ROOT, extra) if extra else (ROOT,)

    async def to_users(self, user_ids: Iterable[str], event: str, payload: Any) -> None:
        rooms = [user_room(uid) for uid in user_ids]
        if rooms:
            for ns in self._namespaces(event):
                await self.sio.emit(event, payload, room=rooms, namespace=ns)

    async def to_chat(self, chat_id: str, event: str, payload: Any, origin: str | None = None) -> None:
        for ns in self._namespaces(event):
            await self.sio.emit(event, payload, room=chat_room(chat_id), skip_sid=origin, namespace=ns)

    async def join_chat(self, user_ids: Iterable[str], chat_id: str) -> None:
        await self._everywhere({"op": "join", "user_ids": list(user_ids), "chat_id": chat_id})

    async def leave_chat(self, user_ids: Iterable[str], chat_id: str) -> None:
        await self._everywhere({"op": "leave", "user_ids": list(user_ids), "chat_id": chat_id})

    async def end_sessions(self, session_ids: Iterable[str]) -> None:
        """Tell each socket of those logins why, then disconnect it, in every process."""
        await self._everywhere({"op": "end", "session_ids": list(session_ids)})

    async def _everywhere(self, instruction: Instruction) -> None:
        """Apply to this process's sockets now, then have every other process apply it to its own."""
        await self.apply(instruction)
        if self.bus is not None:
            await self.bus.publish_instruction(instruction)

    async def apply(self, instruction: Instruction) -> None:
        """Carry out one instruction on the sockets of this process only."""
        op = instruction.get("op")
        if op in ("join", "leave"):
            room = chat_room(str(instruction["chat_id"]))
            move = self.sio.enter_room if op == "join" else self.sio.leave_room
            for ns, sid in self._sockets_of([str(uid) for uid in instruction["user_ids"]]):
                await move(sid, room, namespace=ns)
        elif op == "end":
            for session_id in instruction["session_ids"]:
                room = login_room(str(session_id))
                for ns in NAMESPACES:
                    for sid in [sid for sid, _ in self.sio.manager.get_participants(ns, room)]:
                        await self.sio.emit("unauthorized", REVOKED, to=sid, namespace=ns, ignore_queue=True)
                        await self.sio.disconnect(sid, namespace=ns, ignore_queue=True)

    def _sockets_of(self, user_ids: list[str]) -> list[tuple[str, str]]:
        out = []
        for ns in NAMESPACES:
            for uid in user_ids:
                out += [(ns, sid) for sid, _ in self.sio.manager.get_participants(ns, user_room(uid))]
        return out
