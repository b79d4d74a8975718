"""In-memory presence when a socket opens while the user's last one is still closing.

`PresenceService` is driven directly, with a store and a notifier that record, so
the interleaving is exact: a close hook or the offline write is held on an
`asyncio.Event` while another socket of the same user opens. The user must end
online, with no status announced after the online that already was, no last
seen written, and the hooks that were still to run (a call ending) not run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from handlers.sio.events import payload as event_payload
from models.documents import User
from models.notifier import Notifier
from models.presence import PresenceService

GRACE = 0.05  # seconds: waiting a few of these shows whether an offline timer was left running
SEEN_AT = "2024-05-01T12:00:00.000Z"


class PausingStore:
    """The part of the store presence uses; `update_user` waits for `resume` once `pause` is set."""

    def __init__(self) -> None:
        self.user = User("u1", "u1@example.com", "u1", "x", SEEN_AT, SEEN_AT, last_seen=SEEN_AT)
        self.pause = False
        self.writing = asyncio.Event()
        self.resume = asyncio.Event()
        self.writes: list[dict[str, Any]] = []

    async def get_user(self, user_id: str) -> User | None:
        return self.user if user_id == self.user.id else None

    async def update_user(self, user_id: str, changes: dict[str, Any]) -> User | None:
        if self.pause:
            self.writing.set()
            await self.resume.wait()
        self.writes.append(changes)
        for name, value in changes.items():
            setattr(self.user, name, value)
        return self.user

    async def shared_chat_user_ids(self, user_id: str) -> list[str]:
        return ["watcher"]

    async def blocked_ids(self, user_id: str) -> list[str]:
        return []


class RecordingNotifier(Notifier):
    """The statuses announced about u1, in order."""

    def __init__(self) -> None:
        self.statuses: list[str] = []

    async def to_users(self, user_ids: Iterable[str], event: str, view: Any) -> None:
        assert event == "user_status_changed"
        self.statuses.append(event_payload(event, view)["status"])  # the view, as the Socket.IO notifier writes it


async def past_the_grace() -> None:
    """Long enough for any offline timer started so far to have fired and finished."""
    await asyncio.sleep(GRACE * 4)


async def test_a_socket_opened_while_the_close_hooks_run_keeps_the_user_online() -> None:
    store, notifier = PausingStore(), RecordingNotifier()
    presence = PresenceService(store, notifier, GRACE)
    hooks_running, release_hooks = asyncio.Event(), asyncio.Event()
    calls_ended: list[str] = []

    async def slow_hook(user_id: str) -> None:  # e.g. a lookup in a shared call registry
        hooks_running.set()
        await release_hooks.wait()

    async def end_calls(user_id: str) -> None:
        calls_ended.append(user_id)

    presence.on_last_socket_closed(slow_hook)
    presence.on_last_socket_closed(end_calls)
    try:
        await presence.socket_opened("u1", "s1")
        assert notifier.statuses == ["online"]

        closing = asyncio.ensure_future(presence.socket_closed("u1", "s1"))
        await hooks_running.wait()
        await presence.socket_opened("u1", "s2")  # a reload: the new socket opens while the old one's hooks run
        release_hooks.set()
        await closing
        await past_the_grace()

        assert await presence.is_online("u1")
        assert notifier.statuses == ["online"]  # nobody saw the user leave, so nothing more is said
        assert store.writes == [] and store.user.last_seen == SEEN_AT
        assert calls_ended == []
    finally:
        await presence.close()


async def test_a_socket_opened_while_offline_is_written_is_not_followed_by_a_stale_status() -> None:
    store, notifier = PausingStore(), RecordingNotifier()
    presence = PresenceService(store, notifier, GRACE)
    try:
        await presence.socket_opened("u1", "s1")
        store.pause = True
        await presence.socket_closed("u1", "s1")
        await store.writing.wait()  # the grace period is over: last seen is being written
        await presence.socket_opened("u1", "s2")  # back after the grace period: online again
        store.resume.set()
        await past_the_grace()

        assert await presence.is_online("u1")
        assert notifier.statuses == ["online", "online"]  # the return; no offline (nor repeat) after it
        assert len(store.writes) == 1  # the last seen of the departure
    finally:
        await presence.close()
