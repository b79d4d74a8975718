"""The message search index, filled in bulk rather than message by message.

FTS5 writes an index segment per statement, so indexing each message as it is
inserted costs about 50 us on the send path, and a busy server spends a fifth of
its time there; the same work done for many messages at once costs about 9 us
each. Inserting a message only queues its id (`message_search_pending`, by a
trigger, in the insert's own transaction); the queue is indexed in one
transaction every `interval` seconds, and always before a search reads the
index, so a search still finds every message committed before it started.
Edits and deletions of indexed messages update the index at once (triggers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from models.store.sqlite_base import SqliteBase

log = logging.getLogger(__name__)


class SearchIndex(SqliteBase):
    index_interval = 1.0  # seconds between bulk indexing rounds

    _indexer: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await super().open()
        self._indexer = asyncio.create_task(self._index_forever())

    async def close(self) -> None:
        if self._indexer is not None:
            self._indexer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._indexer
            self._indexer = None
        await super().close()

    async def _index_forever(self) -> None:
        while True:
            await asyncio.sleep(self.index_interval)
            try:
                await self.catch_up_search()
            except Exception:  # a full disk or a lost file: searches will try again, and say so
                log.warning("indexing new messages for search failed", exc_info=True)

    async def catch_up_search(self) -> int:
        """Index every queued message; answers how many were queued (0 costs one cheap read)."""
        if await self._one("SELECT 1 FROM message_search_pending LIMIT 1") is None:
            return 0
        async with self.transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT count(*), (SELECT coalesce(max(key), 0) FROM message_search_keys) FROM message_search_pending"
            )
            queued, top = next(iter(rows))
            # a message edited while queued was indexed by the edit's trigger: OR IGNORE keeps that key
            await db.execute_fetchall(
                "INSERT OR IGNORE INTO message_search_keys (message_id, chat_id)"
                " SELECT m.id, m.chat_id FROM message_search_pending p JOIN messages m ON m.id = p.message_id"
                " WHERE m.deleted = 0 ORDER BY m.id"
            )
            await db.execute_fetchall(
                "INSERT INTO message_search (rowid, content) SELECT k.key, lower(m.content)"
                " FROM message_search_keys k JOIN messages m ON m.id = k.message_id WHERE k.key > ?",
                (top,),
            )
            await db.execute_fetchall("DELETE FROM message_search_pending")
        return int(queued)
