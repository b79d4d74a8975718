"""The domain's `Notifier`, carried out with Socket.IO rooms, in one process or many.

Rooms: `user:<id>` holds every socket of a user, `login:<id>` every socket of
one login, `chat:<id>` every socket of the chat's members. Services hand the
notifier an `Event` and a view; the event registry (`handlers.sio.events`) dumps
the view with the event's schema, once, and names the namespaces that carry it
(`/` and one more), where it is encoded once per namespace whatever the number
of recipients.

With `redis.url` set, several processes share one ordered path. Every notifier
call (an event for a chat or for users, a room join or leave, logins ended) is
one message on one Redis pub/sub channel, and every process, the one that
published it included, applies it to its own sockets when it comes back from
the channel. Redis delivers a channel's messages to every subscriber in the
order it took them, so every process applies the same calls in the same order.
And the call returns only once Redis has taken the message: the ack or REST
answer that follows can only be followed by calls that come later in that order.
Hence, on every process: a member removed (and acknowledged) gets nothing sent
after; a member added gets everything sent after; a message acknowledged before
another is sent is seen first; an edit never overtakes its message.

Pub/sub keeps nothing for a subscriber that is away, so a process whose
subscription drops can no longer promise its sockets anything: it closes them
(Engine.IO close, so clients reconnect and catch up with `sync`) and refuses new
connections until it is subscribed again. A call whose message Redis did not
take fails with 503 `SYS_001`; what the domain stored stays stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Protocol

import redis.asyncio as aioredis
import socketio

from handlers.sio.events import EVENTS, payload
from handlers.sio.fanout import DirectFanoutManager
from handlers.sio.namespaces import NAMESPACES, ROOT
from handlers.sio.rooms import chat_room, login_room, user_room
from handlers.sio.server import SocketServer
from models.errors import ServiceUnavailable
from models.events import Event
from models.notifier import Notifier
from server.redis import REDIS_OPTIONS

log = logging.getLogger(__name__)
REVOKED = {"code": "AUTH_001", "message": "This session was signed out"}
INSTRUCTION = "whatschat:call"  # the `method` of a notifier call among python-socketio's own messages
Instruction = dict[str, Any]


class RedisManager(socketio.AsyncRedisManager, DirectFanoutManager):
    """python-socketio's `AsyncRedisManager` as the one ordered path between processes.

    - `publish` hands Redis a notifier call and returns once Redis took it (or
      raises): one task publishes the outbox in order, a pipeline per batch, so
      waiting costs a sender one round trip shared with every other sender of
      the moment. After a failure it fails at once for `pause` seconds rather
      than try message by message against a dead Redis.
    - The listener applies each notifier call (`on_instruction`) as it comes,
      its own included, in the channel's order. When its subscription drops it
      calls `on_lost` (the notifier closes this process's sockets) and
      reconnects with a backoff that doubles from `min_retry` to `max_retry`
      seconds (upstream grows to 60 s). `accepting` is False meanwhile.
    - An emit addressed to one socket of this process does not go through Redis.
    """

    def __init__(
        self,
        url: str,
        channel: str = "whatschat",
        min_retry: float = 0.1,
        max_retry: float = 2.0,
        pause: float = 1.0,
        outbox: int = 10_000,
        batch: int = 256,
    ) -> None:
        super().__init__(url, channel=channel, redis_options=dict(REDIS_OPTIONS))
        self.min_retry = min_retry
        self.max_retry = max_retry
        self.pause = pause
        self.batch = batch
        self.dropped = 0  # messages Redis never took: outbox full or Redis away
        self._outbox: asyncio.Queue[tuple[Any, asyncio.Future[None] | None]] = asyncio.Queue(outbox)
        self._sender: asyncio.Task[None] | None = None
        self.on_instruction: Callable[[Instruction], Awaitable[None]] | None = None
        self.on_lost: Callable[[], Awaitable[None]] | None = None
        self.subscribed = asyncio.Event()  # set while the listener holds a subscription
        self._publisher: aioredis.Redis | None = None
        self._listener: tuple[aioredis.Redis, Any] | None = None  # the listener's client and subscription
        self._silent_until = 0.0

    @property
    def accepting(self) -> bool:
        """Whether this process can promise a new socket every event: only while subscribed."""
        return self.subscribed.is_set()

    def _client(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(self.redis_url, **self.redis_options)

    def _local(self, sid: Any, namespace: str) -> bool:
        return isinstance(sid, str) and (self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace))

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str | None = None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        namespace = namespace or "/"
        if self._local(room, namespace):  # a socket's own room: it is here
            kwargs["ignore_queue"] = True
        await super().emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs)

    async def publish(self, instruction: Instruction) -> None:
        """Put a notifier call on the channel; returns once Redis has taken it, raises `ConnectionError` if not."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue({**instruction, "method": INSTRUCTION, "host_id": self.host_id}, done)
        await done

    async def _publish(self, data: Any) -> None:
        """python-socketio's own messages (remote disconnects, callbacks): in the same order, unawaited."""
        self._enqueue(data, None)

    def _enqueue(self, data: Any, done: asyncio.Future[None] | None) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_forever())
        try:
            self._outbox.put_nowait((data, done))
        except asyncio.QueueFull:
            self._drop("the outbox is full")
            if done is not None:
                done.set_exception(ConnectionError("the Redis outbox is full"))

    def _drop(self, why: str) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.warning("%d message(s) for the processes never reached Redis so far (%s)", self.dropped, why)

    async def _send_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._outbox.get()]
            while len(batch) < self.batch and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            error: Exception | None = None
            try:
                if loop.time() < self._silent_until:
                    raise ConnectionError("Redis is away")
                if self._publisher is None:
                    self._publisher = self._client()
                async with self._publisher.pipeline(transaction=False) as pipe:
                    for data, _ in batch:
                        pipe.publish(self.channel, self.json.dumps(data))
                    await pipe.execute()
            except Exception as exc:  # RedisError, OSError: stop trying for a moment
                if loop.time() >= self._silent_until:
                    self._silent_until = loop.time() + self.pause
                error = exc if isinstance(exc, ConnectionError) else ConnectionError(str(exc))
            for _, done in batch:
                if error is not None:
                    self._drop(f"Redis publish failed: {error}")
                if done is not None and not done.done():
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)
                self._outbox.task_done()

    async def _listen(self) -> AsyncIterator[Any]:
        """What python-socketio's `_thread` handles, parsed; notifier calls are applied here, in order."""
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
                self._silent_until = 0.0  # Redis answers: publishing need not wait out its pause
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
                was_subscribed = self.subscribed.is_set()
                self.subscribed.clear()
                self._listener = None
                await _close_quietly(pubsub.aclose(), client.aclose())
            if was_subscribed and self.on_lost is not None:
                await self.on_lost()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_retry)

    async def _apply(self, data: Instruction) -> None:
        if self.on_instruction is None:
            return
        try:
            await self.on_instruction(data)
        except Exception:
            log.exception("notifier call %s failed", data.get("op"))

    async def start(self, wait: float = 2.0) -> None:
        """Subscribe now, not at the first connection (python-socketio's default).

        Waits up to `wait` seconds for the subscription, so a process that
        answers health or sockets right after start-up is already subscribed;
        a Redis that does not answer by then leaves the process degraded, retrying.
        """
        if not self.server.manager_initialized:
            self.server.manager_initialized = True
            self.initialize()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), wait)

    async def stop(self, flush: float = 1.0) -> None:
        """Publish what is queued (for at most `flush` seconds), then stop listening and close."""
        self.on_lost = None  # closing down: nothing to tell the sockets
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


class Door(Protocol):
    """Another kind of connection the notifier's calls reach (the plain WebSocket's `WsHub`)."""

    def apply(self, instruction: Instruction) -> None: ...

    def close_all(self) -> int: ...


class SocketNotifier(Notifier):
    """Notifier calls as instructions: applied at once in one process, through the channel with several.

    Each view is dumped with its event's schema (the registry, `handlers.sio.events`)
    before the call is carried, so an instruction holds only JSON (it crosses
    Redis as such) and is dumped once however many processes apply it. Every
    process applies each instruction to its Socket.IO sockets and to the
    connections of the other `doors`, in the same place of the same order.
    """

    def __init__(self, sio: SocketServer) -> None:
        self.sio = sio
        self.doors: list[Door] = []
        # by plain name: an instruction that crossed Redis names its event as a string
        self._routes = {event.value: spec.namespaces for event, spec in EVENTS.items()}
        manager = sio.manager
        self.bus = manager if isinstance(manager, RedisManager) else None
        if self.bus is not None:
            self.bus.on_instruction = self.apply
            self.bus.on_lost = self.close_all

    def _namespaces(self, event: str) -> tuple[str, ...]:
        """Where an event goes; one this process does not know (a newer process sent it), `/` only."""
        return self._routes.get(event, (ROOT,))

    async def to_users(self, user_ids: Iterable[str], event: Event, view: object) -> None:
        users = list(user_ids)
        if users:
            await self._carry({"op": "users", "user_ids": users, "event": event, "payload": payload(event, view)})

    async def to_chat(self, chat_id: str, event: Event, view: object, origin: str | None = None) -> None:
        message = {"op": "chat", "chat_id": chat_id, "event": event, "payload": payload(event, view), "origin": origin}
        await self._carry(message)

    async def join_chat(self, user_ids: Iterable[str], chat_id: str) -> None:
        await self._carry({"op": "join", "user_ids": list(user_ids), "chat_id": chat_id})

    async def leave_chat(self, user_ids: Iterable[str], chat_id: str) -> None:
        await self._carry({"op": "leave", "user_ids": list(user_ids), "chat_id": chat_id})

    async def end_sessions(self, session_ids: Iterable[str]) -> None:
        """Tell each socket of those logins why, then disconnect it, in every process."""
        await self._carry({"op": "end", "session_ids": list(session_ids)})

    async def _carry(self, instruction: Instruction) -> None:
        """Apply it here and now with one process; with several, put it in the channel's order and wait for that."""
        if self.bus is None:
            await self.apply(instruction)
            return
        try:
            await self.bus.publish(instruction)
        except ConnectionError as exc:
            raise ServiceUnavailable("Live delivery is unavailable for a moment; what was saved stays saved") from exc

    async def apply(self, instruction: Instruction) -> None:
        """Carry out one instruction on the sockets of this process only."""
        for door in self.doors:
            door.apply(instruction)
        op = instruction.get("op")
        if op == "chat":
            event, room = str(instruction["event"]), chat_room(str(instruction["chat_id"]))
            for ns in self._namespaces(event):
                await self.sio.emit(
                    event,
                    instruction["payload"],
                    room=room,
                    skip_sid=instruction.get("origin"),
                    namespace=ns,
                    ignore_queue=True,
                )
        elif op == "users":
            event, rooms = str(instruction["event"]), [user_room(str(uid)) for uid in instruction["user_ids"]]
            for ns in self._namespaces(event):
                await self.sio.emit(event, instruction["payload"], room=rooms, namespace=ns, ignore_queue=True)
        elif op in ("join", "leave"):
            room = chat_room(str(instruction["chat_id"]))
            move = self.sio.enter_room if op == "join" else self.sio.leave_room
            users = [str(uid) for uid in instruction["user_ids"]]
            self.sio.room_changes += 1
            for ns, sid in self._sockets_of(users):
                await move(sid, room, namespace=ns)
        elif op == "end":
            for session_id in instruction["session_ids"]:
                room = login_room(str(session_id))
                for ns in NAMESPACES:
                    for sid in [sid for sid, _ in self.sio.manager.get_participants(ns, room)]:
                        await self.sio.emit(Event.UNAUTHORIZED, REVOKED, to=sid, namespace=ns, ignore_queue=True)
                        await self.sio.disconnect(sid, namespace=ns, ignore_queue=True)

    async def close_all(self) -> None:
        """This process lost the channel and may have missed events: every socket reconnects and catches up."""
        for door in self.doors:
            door.close_all()
        sockets = list(self.sio.eio.sockets.values())
        if sockets:
            log.warning("closing %d socket(s): events may have been missed while Redis was away", len(sockets))
        for socket in sockets:
            with contextlib.suppress(Exception):
                await socket.close(wait=False, abort=True)

    def _sockets_of(self, user_ids: list[str]) -> list[tuple[str, str]]:
        out = []
        for ns in NAMESPACES:
            for uid in user_ids:
                out += [(ns, sid) for sid, _ in self.sio.manager.get_participants(ns, user_room(uid))]
        return out
