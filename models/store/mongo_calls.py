"""Call history in MongoDB (a collection group of `MongoStore`).

A call is one document with its participants embedded. `member_ids` lists
everyone who was ever part of it (initiator and participants, only ever added to,
as SQLite's `call_members` rows are), and a multikey index on
`(member_ids, _id)` pages a user's history newest first (call ids sort by time).
"""

from __future__ import annotations

from typing import Any

from pymongo import DESCENDING

from models.documents import Call, CallParticipant
from models.store.mongo_base import MongoBase, count, from_doc, page_of, text, to_doc


def _call(doc: dict[str, Any]) -> Call:
    call = from_doc(Call, doc)
    call.participants = [CallParticipant(**p) for p in doc["participants"]]
    return call


class CallCollections(MongoBase):
    async def save_call(self, call: Call) -> None:
        doc = to_doc(call)
        call_id = text(doc.pop("_id"))
        member_ids = sorted({text(call.initiator_id), *(text(p.user_id) for p in call.participants)})
        await self.calls.update_one(
            {"_id": call_id},
            {"$set": doc, "$addToSet": {"member_ids": {"$each": member_ids}}},
            upsert=True,
        )

    async def get_call(self, call_id: str) -> Call | None:
        doc = await self.calls.find_one({"_id": text(call_id)})
        return _call(doc) if doc is not None else None

    async def user_calls(self, user_id: str, call_type: str | None, page: int, limit: int) -> tuple[list[Call], int]:
        where: dict[str, Any] = {"member_ids": text(user_id)}
        if call_type is not None:
            where["type"] = text(call_type)
        total = await self.calls.count_documents(where)
        cursor = self.calls.find(where).sort("_id", DESCENDING)
        docs = await page_of(cursor, max(count(page) - 1, 0) * count(limit), count(limit))
        return [_call(doc) for doc in docs], total
