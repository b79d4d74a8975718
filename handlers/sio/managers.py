"""The two client managers: sockets of this process only, or of every process through Redis."""

from __future__ import annotations

from handlers.sio.fanout import DirectFanoutManager
from handlers.sio.notifier import RedisManager
from handlers.sio.rooms import CompactRooms


class LocalManager(CompactRooms, DirectFanoutManager):
    """The sockets of this process: rooms as plain dicts, broadcasts queued without a task per recipient."""


class SharedManager(CompactRooms, RedisManager):
    """`LocalManager` for several processes: emits go through Redis."""
