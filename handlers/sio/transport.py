"""Engine.IO sockets that cost little while idle, and the server's WebSocket compression policy.

Most chat sockets are idle most of the time, so what an idle socket holds is
most of the server's memory. Over aiohttp's own WebSocket (about 14.5 KiB),
python-engineio holds about 17 KiB more per idle WebSocket: an `asyncio.Queue`
(four `collections.deque`s of 760 bytes each, even empty), a writer task blocked
on it through `asyncio.wait_for` (which wraps the `get()` in one more task), a
reader task per frame wrapped in `wait_for` too, a task sleeping `ping_interval`
between pings, a WSGI-style copy of every request header, and the coroutine
frames of the request that opened the connection (with the parsed query and the
OPEN packet), which live as long as it does. This module keeps Engine.IO's
protocol and python-engineio's code paths, and drops that waiting state:

- `PacketQueue`: the part of `asyncio.Queue` Engine.IO uses, in about 200 bytes.
- `EngineSocket`: reads its WebSocket in the request's own task and frame; its
  `WebSocket` writes from a task that exists only while packets wait to go out.
- `Heartbeat`: one timer for the pings (and pong deadlines) of every socket,
  instead of a sleeping task each (or a timer each: about 540 bytes under uvloop).
- `Environ`: the WSGI environ python-engineio and python-socketio keep per
  connection, read from the aiohttp request when asked instead of copied.
- `EngineServer.handle_request`: a request that opens a WebSocket is served in
  one frame instead of python-engineio's four.
- `EngineServer.close_all`: at shutdown, every transport closed so that clients
  reconnect elsewhere (python-engineio has no such call), after the events
  under way have answered.
- `socketio.websocket_compression` (`EngineServer(websocket_compression=)`):
  whether WebSockets accept permessage-deflate. aiohttp accepts it whenever a
  client offers it (every browser does), and each connection that used it keeps
  zlib state of about 100 KiB (a 32 KiB window to inflate with, and 256 KiB of
  deflate window and tables of which most gets touched), five times an idle
  socket's cost, so it is off unless configured.

On the wire nothing changes: the same packets in the same order, the upgrade
from long-polling, a ping `ping_interval` after each pong, a socket closed when
a ping goes unanswered for `ping_timeout`, queued packets sent before the
WebSocket closes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import engineio
from aiohttp import WSMessage, web
from engineio import exceptions, packet
from engineio.async_socket import AsyncSocket

log = logging.getLogger(__name__)


class PacketQueue:
    """The part of `asyncio.Queue` Engine.IO uses (FIFO, unbounded, `task_done`/`join`), in about 200 bytes.

    `asyncio.Queue` builds four `collections.deque`s (items, getters, putters and
    its `join` event's waiters) of 760 bytes each, even empty, about 3.2 KiB in
    all; this one keeps items in a list and creates waiters only for someone who
    waits. It has no bound: `SocketServer` bounds each client's backlog itself.
    """

    __slots__ = ("_getters", "_head", "_items", "_joiners", "_unfinished", "on_put")

    def __init__(self) -> None:
        # called when an item was queued and nobody waited in `get()`: how a WebSocket's writer wakes up
        self.on_put: Callable[[], None] | None = None
        self._items: list[Any] = []
        self._head = 0  # items before it were taken already (popping a list's front is O(n))
        self._getters: list[asyncio.Future[Any]] | None = None
        self._unfinished = 0
        self._joiners: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        return len(self._items) - self._head

    def empty(self) -> bool:
        return self._head == len(self._items)

    def put_nowait(self, item: Any) -> None:
        self._unfinished += 1
        getters = self._getters
        while getters:  # someone waits, so the queue is empty: hand the item over
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(item)
                return
        self._items.append(item)
        if self.on_put is not None:
            self.on_put()

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        items, head = self._items, self._head
        if head == len(items):
            raise asyncio.QueueEmpty
        item = items[head]
        items[head] = None
        head += 1
        if head == len(items):
            items.clear()  # releases the list's storage too
            head = 0
        elif head >= 64 and head * 2 >= len(items):
            del items[:head]
            head = 0
        self._head = head
        return item

    def get(self) -> asyncio.Future[Any]:
        """A future of the next item: awaitable like `Queue.get()`, cancellable without losing an item."""
        future = asyncio.get_running_loop().create_future()
        if not self.empty():
            future.set_result(self.get_nowait())
            return future
        getters = self._getters
        if getters is None:
            getters = self._getters = []
        elif getters:
            getters[:] = [g for g in getters if not g.done()]  # those given up on (timed out polls)
        getters.append(future)
        return future

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._joiners:
            joiners, self._joiners = self._joiners, None
            for joiner in joiners:
                if not joiner.done():
                    joiner.set_result(None)

    async def join(self) -> None:
        if self._unfinished == 0:
            return
        joiner = asyncio.get_running_loop().create_future()
        if self._joiners is None:
            self._joiners = []
        self._joiners.append(joiner)
        await joiner


class Heartbeat:
    """Wakes sockets when their ping, or their pong deadline, is due: one timer for all of them.

    Sockets due in the same tick share a set; one loop timer is armed for the
    earliest tick. A tick is at most a second and at most a quarter of the ping
    interval and timeout, so a ping goes out at most that late, well within what
    clients allow (`pingInterval + pingTimeout`).
    """

    __slots__ = ("_at", "_closing", "_due", "_timer", "resolution")

    def __init__(self, ping_interval: float, ping_timeout: float) -> None:
        self.resolution = min(1.0, ping_interval / 4, ping_timeout / 4)
        self._due: dict[int, set[EngineSocket]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._at = 0  # the tick the timer is armed for
        self._closing: set[asyncio.Task[Any]] = set()  # closes of sockets that missed their pong

    def schedule(self, socket: EngineSocket, delay: float) -> None:
        """Wake `socket` (its `beat()`) in `delay` seconds, instead of when it was due."""
        self.cancel(socket)
        loop = asyncio.get_running_loop()
        tick = math.ceil((loop.time() + delay) / self.resolution)
        bucket = self._due.get(tick)
        if bucket is None:
            bucket = self._due[tick] = set()
        bucket.add(socket)
        socket._due = tick
        if self._timer is None or tick < self._at:
            self._arm(loop, tick)

    def cancel(self, socket: EngineSocket) -> None:
        tick, socket._due = socket._due, None
        bucket = self._due.get(tick) if tick is not None else None
        if tick is not None and bucket is not None:
            bucket.discard(socket)
            if not bucket:
                del self._due[tick]

    def _arm(self, loop: asyncio.AbstractEventLoop, tick: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._at = tick
        self._timer = loop.call_at(tick * self.resolution, self._fire)

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = math.floor(loop.time() / self.resolution + 0.01)  # timers may fire a hair early
        for tick in sorted(tick for tick in self._due if tick <= now):
            for socket in self._due.pop(tick):
                socket._due = None
                try:
                    socket.beat()
                except Exception:  # one socket's trouble must not stop the others' pings
                    socket.server.logger.exception("%s: heartbeat failed", socket.sid)
        if self._due:
            self._arm(loop, min(self._due))

    def close_late(self, socket: EngineSocket) -> None:
        """Close a socket whose pong is overdue (a task: closing tells python-socketio, which awaits)."""
        task = asyncio.ensure_future(self._expire(socket))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _expire(socket: EngineSocket) -> None:
        if socket.closing or socket.closed:  # it went meanwhile
            return
        socket.server.logger.info("%s: Client is gone, closing socket", socket.sid)
        try:  # what python-engineio's `check_ping_timeout` does (its `send` then drops the CLOSE packet)
            await socket.close(wait=False, abort=False, reason=socket.server.reason.PING_TIMEOUT)
        except Exception:
            socket.server.logger.exception("%s: closing after a missed pong failed", socket.sid)


class WebSocket:
    """The WebSocket transport of one `EngineSocket`: aiohttp's WebSocket and the task writing to it.

    The writer task exists only while packets wait to go out: an idle socket's
    queue holds `_wake` as its `on_put`, the first packet starts a task that
    sends everything queued, and the task ends when the queue is empty again.
    `None` in the queue (Engine.IO's signal that the socket is done) closes the
    WebSocket after what was queued before it, as it ends python-engineio's
    writer task.
    """

    __slots__ = ("_sock", "done", "socket", "task")

    def __init__(self, socket: EngineSocket) -> None:
        self.socket = socket
        self._sock = web.WebSocketResponse(
            max_msg_size=socket.server.max_http_buffer_size, compress=socket.server.websocket_compression
        )
        self.task: asyncio.Task[None] | None = None
        self.done = False

    async def open(self, request: web.Request) -> web.WebSocketResponse:
        await self._sock.prepare(request)
        # the handshake's headers went out as bytes; aiohttp would keep them (about 0.6 KiB) for the
        # WebSocket's whole life, and nothing reads a WebSocket response's headers after that
        self._sock.headers.clear()
        return self._sock

    def receive(self) -> Awaitable[WSMessage]:
        """aiohttp's next message (returned, not awaited: the reader has no frame of its own here)."""
        return self._sock.receive()

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            await self._sock.send_bytes(message)
        else:
            await self._sock.send_str(message)

    def start_sending(self) -> None:
        """From now on every queued packet goes out on this WebSocket."""
        self.socket.queue.on_put = self._wake
        if not self.socket.queue.empty():
            self._wake()

    def _wake(self) -> None:
        self.socket.queue.on_put = None
        self.task = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        queue = self.socket.queue
        pkt = None
        try:
            while not queue.empty():
                pkt = queue.get_nowait()
                queue.task_done()
                if pkt is None:
                    break
                await self.send(pkt.encode())
        except Exception:  # the connection broke: python-engineio's writer gives up the same way
            pkt = None
        self.task = None
        if pkt is not None and not self.done:
            queue.on_put = self._wake
            return
        self._finish()
        await self._sock.close()

    def _finish(self) -> None:
        """Nothing more will be sent: release whoever waits for the queue to drain (`close(wait=True)`)."""
        self.done = True
        queue = self.socket.queue
        queue.on_put = None
        while not queue.empty():
            queue.get_nowait()
            queue.task_done()

    async def stop(self) -> None:
        """Send what is queued, then close the WebSocket."""
        task = self.task
        if task is not None and not self.done:
            self.socket.queue.put_nowait(None)
            await task
        self._finish()
        await self._sock.close()


class EngineSocket(AsyncSocket):
    """An Engine.IO socket whose idle WebSocket is its request's task and a place in the `Heartbeat`.

    Behaves as `AsyncSocket` does; the differences are where it waits. Pings
    are due in the server's `Heartbeat` rather than in a task sleeping
    `ping_interval`, and a ping unanswered for `ping_timeout` closes the socket
    from there too (python-engineio's service task finds such sockets within
    another `ping_timeout`, and its WebSocket reader gives up after
    `ping_interval + ping_timeout` without a frame). The WebSocket is read in
    the request's own task, in `_upgrade_websocket`, and written by `WebSocket`.
    """

    server: EngineServer
    _due: int | None = None  # the `Heartbeat` tick this socket waits for
    _websocket: WebSocket | None = None  # while the WebSocket transport is up
    # python-engineio's own attributes that this class sets (the package ships no types)
    last_ping: float | None
    connected: bool
    upgrading: bool
    upgraded: bool

    def schedule_ping(self) -> None:
        if self.last_ping:
            self.last_ping = None
            self.server.heartbeat().schedule(self, self.server.ping_interval)

    def beat(self) -> None:
        """Due: send the next ping, or close the socket if the last one is still unanswered."""
        if self.closing or self.closed:
            return
        heartbeat = self.server.heartbeat()
        if self.last_ping is None:
            # what `_send_ping` does: `send` checks no pong while none is owed
            self.last_ping = time.time()
            self.queue.put_nowait(packet.Packet(packet.PING))
            heartbeat.schedule(self, self.server.ping_timeout)
            return
        left = self.server.ping_timeout - (time.time() - self.last_ping)
        if left > 0:  # woken a little early
            heartbeat.schedule(self, left)
        else:
            heartbeat.close_late(self)

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        self.server.heartbeat().cancel(self)
        await super().close(wait=wait, abort=abort, reason=reason)
        websocket = self._websocket
        if websocket is not None and self.closed and not websocket.done:
            # closed by the server (or for a missed pong): the CLOSE packet goes out, then the WebSocket closes
            self.queue.put_nowait(None)
        elif websocket is None and self.closed and reason == self.server.reason.CLIENT_DISCONNECT:
            # a long-polling client said goodbye: it sends no further request, and python-engineio forgets
            # a closed polling session only on its next GET (or on its service round, up to ping_timeout
            # later). Nothing is left to deliver, so it goes now; a poll still open returns as before.
            self.server.sockets.pop(self.sid, None)

    async def _upgrade_websocket(self, environ: MutableMapping[str, Any]) -> web.WebSocketResponse:
        """Serve the WebSocket transport: python-engineio's `_websocket_handler`, read in this task."""
        if self.upgraded:
            raise OSError("Socket has been upgraded already")
        websocket = WebSocket(self)
        response = await websocket.open(environ["aiohttp.request"])
        if self.connected:  # an upgrade from long-polling: answer the probe, end the pending poll, switch
            self.upgrading = True  # hold packet sends during the upgrade
            try:
                if not self._is_packet(await websocket.receive(), packet.PING, "probe"):
                    self.server.logger.info("%s: Failed websocket upgrade, no PING packet", self.sid)
                    return response
                await websocket.send(packet.Packet(packet.PONG, data="probe").encode())
                await self.queue.put(packet.Packet(packet.NOOP))  # end poll
                if not self._is_packet(await websocket.receive(), packet.UPGRADE):
                    self.server.logger.info("%s: Failed websocket upgrade, expected UPGRADE packet", self.sid)
                    return response
            finally:
                self.upgrading = False
            self.upgraded = True
        else:
            self.connected = True
            self.upgraded = True

        self._websocket = websocket
        websocket.start_sending()
        self.server.logger.info("%s: Upgrade to websocket successful", self.sid)
        limit = self.server.max_http_buffer_size
        try:
            while True:
                data = (await websocket.receive()).data
                # closed, broken, or too large (aiohttp's `max_msg_size` refuses those already)
                if not isinstance(data, (str, bytes)) or len(data) > limit:
                    break
                pkt = packet.Packet(encoded_packet=data)  # not an Engine.IO packet: raises, as python-engineio does
                # the frame (up to max_payload) is not kept while the socket waits for the next one
                data = None
                try:
                    await self.receive(pkt)
                except exceptions.UnknownPacketError:
                    pass
                except exceptions.SocketIsClosedError:
                    self.server.logger.info("Receive error -- socket is closed")
                    break
                except Exception:
                    self.server.logger.exception("Unknown receive error")
                pkt = None
        finally:
            await websocket.stop()
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
        self._websocket = None  # no cycle left for the collector to find
        return response

    def _is_packet(self, msg: WSMessage, packet_type: int, data: str | None = None) -> bool:
        if not isinstance(msg.data, (str, bytes)) or len(msg.data) > self.server.max_http_buffer_size:
            return False
        decoded = packet.Packet(encoded_packet=msg.data)
        return decoded.packet_type == packet_type and (data is None or decoded.data == data)


_CONSTANT: dict[str, Any] = {
    "wsgi.version": (1, 0),
    "wsgi.async": True,
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
    "SERVER_SOFTWARE": "aiohttp",
    "REMOTE_ADDR": "127.0.0.1",
    "REMOTE_PORT": "0",
    "SERVER_NAME": "aiohttp",
    "SERVER_PORT": "0",
    "SCRIPT_NAME": "",
}
_FROM_REQUEST = (
    "wsgi.input",
    "wsgi.errors",
    "REQUEST_METHOD",
    "QUERY_STRING",
    "RAW_URI",
    "SERVER_PROTOCOL",
    "aiohttp.request",
    "wsgi.url_scheme",
    "PATH_INFO",
)
_UNSET = object()


def _environ_key(header: str) -> str:
    name = header.upper()
    if name in ("CONTENT-TYPE", "CONTENT-LENGTH"):
        return name.replace("-", "_")
    return "HTTP_" + name.replace("-", "_")


class Environ(MutableMapping[str, Any]):
    """python-engineio's WSGI environ for an aiohttp request, read from the request instead of copied.

    python-engineio builds a dict of every header (`HTTP_*`) for each request,
    and python-socketio keeps the connection's for as long as it lives: about
    1.5 KiB for a WebSocket with a handful of headers, more for a browser's.
    This mapping has the same keys and values (repeated headers joined with
    commas, `wsgi.url_scheme` from `X-Forwarded-Proto`) and stores only what is
    written to it.
    """

    __slots__ = ("_changed", "request")

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self._changed: dict[str, Any] | None = None  # keys set (or deleted: `_UNSET`) since

    def _read(self, key: str) -> Any:
        changed = self._changed
        if changed is not None and key in changed:
            return changed[key]
        if key in _CONSTANT:
            return _CONSTANT[key]
        request = self.request
        if key.startswith(("HTTP_", "CONTENT_")):
            values = [value for name, value in request.headers.items() if _environ_key(name) == key]
            if not values:
                return _UNSET
            return values[-1] if key.startswith("CONTENT_") else ",".join(values)
        if key == "wsgi.input":
            return request.content
        if key == "wsgi.errors":
            return sys.stderr
        if key == "REQUEST_METHOD":
            return request.method
        if key == "QUERY_STRING":
            return request.query_string or ""
        if key == "RAW_URI":
            return request.path_qs
        if key == "SERVER_PROTOCOL":
            return f"HTTP/{request.version[0]}.{request.version[1]}"
        if key == "aiohttp.request":
            return request
        if key == "wsgi.url_scheme":
            scheme = self._read("HTTP_X_FORWARDED_PROTO")
            return "http" if scheme is _UNSET else scheme
        if key == "PATH_INFO":
            return request.path
        return _UNSET

    def __getitem__(self, key: str) -> Any:
        value = self._read(key)
        if value is _UNSET:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        if self._changed is None:
            self._changed = {}
        self._changed[key] = value

    def __delitem__(self, key: str) -> None:
        if self._read(key) is _UNSET:
            raise KeyError(key)
        self[key] = _UNSET

    def __iter__(self) -> Iterator[str]:
        keys = dict.fromkeys([*_CONSTANT, *_FROM_REQUEST, *map(_environ_key, self.request.headers)])
        if self._changed is not None:
            keys.update(dict.fromkeys(self._changed))
        return (key for key in keys if self._read(key) is not _UNSET)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Environ({dict(self)!r})"


def translate_request(request: web.Request) -> Environ:
    """The `translate_request` of python-engineio's aiohttp driver, answering an `Environ`."""
    return Environ(request)


FIRST_ANSWERS = 0.5  # at shutdown, how long the events under way may take to answer before the transports close
# what python-engineio and python-socketio run a client's event in, each as a task of its own
_EVENT_HANDLERS = frozenset({"run_async_handler", "run_sync_handler", "_handle_event_internal"})


class EngineServer(engineio.AsyncServer):
    """The Engine.IO server of `SocketServer`: `EngineSocket`s with a `PacketQueue` each, and the compression policy.

    `websocket_compression` decides whether WebSockets accept permessage-deflate
    (python-engineio leaves it to aiohttp, which accepts it whenever offered).
    """

    # python-engineio's own attributes that this class sets (the package ships no types)
    _async: dict[str, Any]
    start_service_task: bool

    def __init__(self, *args: Any, websocket_compression: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.websocket_compression = websocket_compression
        self._heartbeat: Heartbeat | None = None
        if self.async_mode != "aiohttp":
            raise ValueError("EngineServer serves aiohttp only")
        self._async = {**self._async, "translate_request": translate_request}  # a copy: the driver's is shared
        self._running: set[asyncio.Task[Any]] = set()  # event handlers and closes under way (see `close_all`)

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> asyncio.Task[Any]:
        """python-engineio's (and python-socketio's) tasks; those handling a client's event are remembered.

        `close_all` waits for them. Others run until shutdown (the Redis
        listener, python-engineio's sweep) and are not waited for.
        """
        task: asyncio.Task[Any] = super().start_background_task(target, *args, **kwargs)
        if getattr(target, "__name__", None) in _EVENT_HANDLERS:
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return task

    async def close_all(self, grace: float) -> int:
        """At shutdown: close every transport so that clients reconnect elsewhere, then let their events finish.

        No Engine.IO CLOSE and no Socket.IO DISCONNECT goes out: after either,
        clients (socket.io-client, python-socketio) consider themselves sent away
        and do not reconnect. A WebSocket gets what was queued for it, then a
        closing frame; a pending long-poll returns empty and the next finds no
        session. Either way the client sees its transport close and reconnects
        with its usual backoff (to another process behind the same address, or
        to this one once it is back). The disconnect handlers run as for any
        lost client. Events under way get a moment to answer first, so their acks
        go out with the rest of the queue; events received later (a message being
        stored) run to the end, for at most `grace` seconds in all, before the
        caller closes the store. Answers the number of sockets closed.
        """

        async def close(socket: AsyncSocket) -> None:
            try:
                await socket.close(wait=False, abort=True, reason=self.reason.SERVER_DISCONNECT)
                if getattr(socket, "_websocket", None) is None:
                    socket.queue.put_nowait(None)  # end a pending long-poll now
            except Exception:  # one socket's trouble must not keep the others open
                self.logger.debug("closing %s at shutdown failed", socket.sid, exc_info=True)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        current = asyncio.current_task()
        answering = {task for task in self._running if task is not current}
        if answering:  # events under way usually end within milliseconds: their acks leave before the close
            await asyncio.wait(answering, timeout=min(FIRST_ANSWERS, grace))
        sockets = [socket for socket in list(self.sockets.values()) if not socket.closed]
        pending = {task for task in self._running if task is not current and not task.done()}
        pending.add(asyncio.ensure_future(asyncio.gather(*(close(socket) for socket in sockets))))
        while pending:  # handlers started meanwhile (by the closes) are waited for too
            _, still = await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
            if still:
                log.warning("%d event handlers still running after %g s at shutdown; leaving them", len(still), grace)
                break
            pending = {task for task in self._running if task is not current and not task.done()}
        if self.service_task_handle is not None:  # python-engineio's sweep of silent sockets: nothing left to sweep
            await self.shutdown()
        return len(sockets)

    def heartbeat(self) -> Heartbeat:
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(self.ping_interval, self.ping_timeout)
        return self._heartbeat

    def create_queue(self, *args: Any, **kwargs: Any) -> Any:
        """Each socket's queue (python-engineio asks without arguments); asked with some, an `asyncio.Queue`."""
        return PacketQueue() if not args and not kwargs else super().create_queue(*args, **kwargs)

    async def handle_request(self, request: web.Request) -> web.StreamResponse:
        """python-engineio's entry point, with a request that opens a WebSocket served in this one frame.

        python-engineio serves a WebSocket from inside `handle_request`, `_handle_connect`,
        `handle_get_request` and `_upgrade_websocket`, and those coroutine frames, with their
        locals (the parsed query, the OPEN packet), live as long as the connection: about 2 KiB.
        A request that opens a WebSocket and passes python-engineio's checks is served here, as
        `_handle_connect` would; every other request (long-polling, upgrades, whatever fails a
        check) goes to python-engineio, which answers it as always.
        """
        environ = Environ(request)
        if not self._opens_websocket(environ):
            return await super().handle_request(request)
        if self.start_service_task:
            self.start_service_task = False
            self.service_task_handle = self.start_background_task(self._service_task)
        sid = self.generate_id()
        socket = self.sockets[sid] = EngineSocket(self, sid)
        await socket.send(
            packet.Packet(
                packet.OPEN,
                {
                    "sid": sid,
                    "upgrades": self._upgrades(sid, "websocket"),
                    "pingTimeout": int(self.ping_timeout * 1000),
                    "pingInterval": int(self.ping_interval + self.ping_interval_grace_period) * 1000,
                    "maxPayload": self.max_http_buffer_size,
                },
            )
        )
        accepted = await self._trigger_event("connect", sid, environ, run_async=False)
        if accepted is not None and accepted is not True:
            del self.sockets[sid]
            self.logger.warning("Application rejected connection")
            response: web.StreamResponse = await self._make_response(self._unauthorized(accepted or None), environ)
            return response
        socket.schedule_ping()
        response = await socket._upgrade_websocket(environ)
        if socket.closed and sid in self.sockets:
            del self.sockets[sid]
        return response

    def _opens_websocket(self, environ: Environ) -> bool:
        """A GET that opens a new WebSocket and that python-engineio would accept as such."""
        if environ["REQUEST_METHOD"] != "GET" or environ.get("HTTP_UPGRADE", "").lower() != "websocket":
            return False
        connection = [part.strip() for part in environ.get("HTTP_CONNECTION", "").lower().split(",")]
        if "upgrade" not in connection or "websocket" not in self.transports:
            return False
        query = urllib.parse.parse_qs(environ["QUERY_STRING"])
        if "sid" in query or "j" in query or query.get("EIO") != ["4"] or query.get("transport") != ["websocket"]:
            return False
        origin = environ.get("HTTP_ORIGIN")
        if self.cors_allowed_origins != [] and origin:
            allowed = self._cors_allowed_origins(environ)
            return allowed is None or origin in allowed
        return True

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "connect":
            # python-engineio builds the sockets of long-polling connections as `AsyncSocket`s and
            # announces each with this event before it schedules a ping or reads a frame: from here
            # on it is a `EngineSocket` (a subclass that only overrides methods: the object is unchanged)
            socket = self.sockets.get(args[0])
            if type(socket) is AsyncSocket:
                socket.__class__ = EngineSocket
        return await super()._trigger_event(event, *args, **kwargs)
