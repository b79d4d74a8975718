"""Group commit: the messages of many senders stored in one transaction.

Every write to the SQLite file goes through one connection in turn, and a write
is a trip to aiosqlite's thread and back through the event loop. Sent one by
one, messages would queue behind each other's trips and a busy server would
spend its time waiting. Instead, messages that arrive while a write is in
flight wait for the next one and are stored together, each sender answered
only after that transaction has committed, so an acknowledgement still means
the message is on disk. At low load a batch holds one message and takes the
single-statement path; under load batches grow by themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class GroupCommit(Generic[Item]):
    """Batches `submit`ted items; `one` stores a lone item, `many` a batch, each answering per item."""

    def __init__(
        self,
        one: Callable[[Item], Awaitable[bool]],
        many: Callable[[list[Item]], Awaitable[list[bool]]],
        max_batch: int = 256,
    ) -> None:
        self._one = one
        self._many = many
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all())
        return await future

    async def _write_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                if len(batch) == 1:
                    results = [await self._one(batch[0][0])]
                else:
                    results = await self._many([item for item, _ in batch])
            except Exception as exc:  # the whole transaction failed: every sender in it hears so
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), stored in zip(batch, results, strict=True):
                if not future.done():  # a sender that went away meanwhile needs no answer
                    future.set_result(stored)

    async def close(self) -> None:
        """Let the batch in flight finish (its senders are waiting for it)."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
