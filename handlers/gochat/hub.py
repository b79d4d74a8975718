"""The plain WebSocket connections of this process, and the notifier calls applied to them.

The Socket.IO notifier (`handlers.sio.notifier.SocketNotifier`) applies every
notifier call (an event for a chat or for users, a room change, ended logins)
to this process's sockets, in the one order every process shares when Redis
carries them; it hands each call to the hub too, so `/ws` connections get the
same events, in the same order, from the same path. The hub keeps its own
rooms: the connections of each user, each login and each chat.

Each connection has one writer task and a bounded queue, like a Socket.IO
client's (`limits.ephemeral_queue`, `limits.max_queue`): past the first bound
typing frames are dropped, past the second the connection is closed (1013, try
again later) rather than buffered for ever; the client reconnects and reads what
it missed over REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from aiohttp import WSCloseCode, web

from handlers.gochat.frames import BY_NAME, FrameSpec
from models.auth import Identity
from models.events import Event

log = logging.getLogger(__name__)
Reached = Callable[[str, str, str, str], Awaitable[Any]]  # user, chat, message, sender
SIGNED_OUT = 4001  # logout, password change or revocation ended this login
FELL_BEHIND = int(WSCloseCode.TRY_AGAIN_LATER)
RECONNECT = int(WSCloseCode.SERVICE_RESTART)  # this process lost Redis: reconnect (to any process) and catch up
EPHEMERAL = frozenset({Event.TYPING_START.value, Event.TYPING_STOP.value})
_ids = itertools.count(1)


class Connection:
    """One `/ws` client: who it is, which chats it follows, and what is waiting to be written to it."""

    def __init__(self, ws: web.WebSocketResponse, identity: Identity, ephemeral_queue: int, max_queue: int) -> None:
        self.id = f"ws-{next(_ids)}"
        self.ws = ws
        self.identity = identity
        self.user_id = identity.user.id
        self.session_id = identity.session_id
        self.chats: set[str] = set()
        self.ephemeral_queue = ephemeral_queue
        self.max_queue = max_queue
        self.queue: asyncio.Queue[tuple[str, Callable[[], Any] | None] | None] = asyncio.Queue()
        self.closing = False
        # frames for a connection not yet announced (`connected`): they follow that frame, never precede it
        self._early: list[tuple[str, bool, Callable[[], Any] | None]] | None = []
        self.closer: asyncio.Future[bool] | None = None
        self.writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.writer = asyncio.ensure_future(self._write_forever())

    def announce(self, frame: dict[str, Any]) -> None:
        """Queue the connection's first frame, then whatever events came while it was being set up."""
        early, self._early = self._early or [], None
        self.send_json(frame)
        for text, ephemeral, written in early:
            self.send(text, ephemeral, written)

    def send(self, text: str, ephemeral: bool = False, written: Callable[[], Any] | None = None) -> None:
        """Queue a frame; `written` runs once it has been handed to the socket."""
        if self.closing:
            return
        if self._early is not None:
            self._early.append((text, ephemeral, written))
            return
        backlog = self.queue.qsize()
        if backlog >= self.max_queue:
            log.warning("/ws client %s fell %d frames behind; closing it", self.id, backlog)
            self.close(FELL_BEHIND, "fell behind")
            return
        if ephemeral and backlog >= self.ephemeral_queue:
            return
        self.queue.put_nowait((text, written))

    def send_json(self, frame: dict[str, Any]) -> None:
        self.send(orjson.dumps(frame, option=orjson.OPT_NON_STR_KEYS).decode())

    def close(self, code: int, message: str) -> None:
        """Close soon, after nothing more: whatever is queued is dropped."""
        if self.closing:
            return
        self.closing = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.closer = asyncio.ensure_future(self.ws.close(code=code, message=message.encode()))
        self.queue.put_nowait(None)

    async def _write_forever(self) -> None:
        while (item := await self.queue.get()) is not None:
            text, written = item
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):  # the client went away; the reader ends the connection
                return
            if written is not None:
                written()

    async def stop(self) -> None:
        if self.writer is not None:
            self.writer.cancel()
            await asyncio.gather(self.writer, return_exceptions=True)


class WsHub:
    """This process's `/ws` connections by user, login and chat; applies notifier calls to them."""

    def __init__(self, reached: Reached) -> None:
        self.reached = reached  # `MessageService.reached`: a message was written to a recipient
        self.users: dict[str, set[Connection]] = {}
        self.logins: dict[str, set[Connection]] = {}
        self.chats: dict[str, set[Connection]] = {}
        self.room_changes = 0  # join/leave calls applied so far (see `follow`)
        self._reports: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return sum(len(conns) for conns in self.users.values())

    def add(self, conn: Connection) -> None:
        self.users.setdefault(conn.user_id, set()).add(conn)
        self.logins.setdefault(conn.session_id, set()).add(conn)

    def discard(self, conn: Connection) -> None:
        for index, key in ((self.users, conn.user_id), (self.logins, conn.session_id)):
            _remove(index, key, conn)
        for chat_id in conn.chats:
            _remove(self.chats, chat_id, conn)
        conn.chats.clear()

    async def follow(self, conn: Connection, chat_ids: Callable[[], Awaitable[list[str]]]) -> None:
        """Follow the chats the store has for the user, read again while room changes race the read.

        The connection is in `users` already, so a room change applied from now on
        reaches it directly; one applied between the read and the joins is what
        the count of room changes catches (as `BaseNamespace.enter_chats` does).
        """
        for _ in range(10):
            seen = self.room_changes
            wanted = set(await chat_ids())
            for chat_id in conn.chats - wanted:
                self._leave(conn, chat_id)
            for chat_id in wanted - conn.chats:
                self._join(conn, chat_id)
            if self.room_changes == seen:
                return
        log.warning("the chats of %s kept changing while a /ws connection joined them", conn.user_id)

    def _join(self, conn: Connection, chat_id: str) -> None:
        conn.chats.add(chat_id)
        self.chats.setdefault(chat_id, set()).add(conn)

    def _leave(self, conn: Connection, chat_id: str) -> None:
        conn.chats.discard(chat_id)
        _remove(self.chats, chat_id, conn)

    def _of_users(self, user_ids: Iterable[Any]) -> list[Connection]:
        return [conn for uid in user_ids for conn in self.users.get(str(uid), ())]

    # notifier calls ------------------------------------------------------------------------------------------------

    def apply(self, instruction: dict[str, Any]) -> None:
        """One notifier call, as `SocketNotifier.apply` carries it out for Socket.IO."""
        op = instruction.get("op")
        if op == "chat":
            self._deliver(self.chats.get(str(instruction["chat_id"]), set()), instruction)
        elif op == "users":
            self._deliver(self._of_users(instruction["user_ids"]), instruction)
        elif op in ("join", "leave"):
            self.room_changes += 1
            chat_id = str(instruction["chat_id"])
            move = self._join if op == "join" else self._leave
            for conn in self._of_users(instruction["user_ids"]):
                move(conn, chat_id)
        elif op == "end":
            for session_id in instruction["session_ids"]:
                for conn in list(self.logins.get(str(session_id), ())):
                    conn.close(SIGNED_OUT, "signed out")

    def _deliver(self, conns: Iterable[Connection], instruction: dict[str, Any]) -> None:
        event = str(instruction["event"])
        spec = BY_NAME.get(event)
        conns = list(conns)
        if spec is None or not conns:
            return
        payload = instruction["payload"]
        if spec.wanted is not None and not spec.wanted(payload):
            return
        if spec.skip_user is not None:
            conns = [c for c in conns if c.user_id != payload.get(spec.skip_user)]
            if not conns:
                return
        text = orjson.dumps({"type": spec.name, "data": spec.reshape(payload)}).decode()
        ephemeral = event in EPHEMERAL
        for conn in conns:
            conn.send(text, ephemeral, self._reached_once(spec, payload, conn))

    def _reached_once(self, spec: FrameSpec, payload: dict[str, Any], conn: Connection) -> Callable[[], Any] | None:
        """For a message frame to a recipient: report it delivered once it is written."""
        if spec.reached is None:
            return None
        chat_key, message_key, sender_key = spec.reached
        sender = str(payload[sender_key])
        if conn.user_id == sender:
            return None
        args = (conn.user_id, str(payload[chat_key]), str(payload[message_key]), sender)

        def report() -> None:
            task = asyncio.ensure_future(self._report(*args))
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)

        return report

    async def _report(self, user_id: str, chat_id: str, message_id: str, sender_id: str) -> None:
        try:
            await self.reached(user_id, chat_id, message_id, sender_id)
        except Exception:  # a store or Redis hiccup: the status stays `sent` until a read moves it on
            log.warning("could not record %s as delivered to %s", message_id, user_id, exc_info=True)

    def close_all(self, code: int = RECONNECT, message: str = "reconnect") -> int:
        conns = [conn for group in self.users.values() for conn in group]
        for conn in conns:
            conn.close(code, message)
        return len(conns)

    async def stop(self) -> None:
        """At shutdown: every connection told to reconnect, and the delivery reports still running finished."""
        self.close_all(int(WSCloseCode.GOING_AWAY), "server stopping")
        if self._reports:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._reports, return_exceptions=True), 3.0)


def _remove(index: dict[str, set[Connection]], key: str, conn: Connection) -> None:
    group = index.get(key)
    if group is not None:
        group.discard(conn)
        if not group:
            del index[key]
