"""History pages are written without marshmallow: byte for byte what `MessageOut` writes."""

from __future__ import annotations

import orjson

from models.clock import new_id, now_iso
from models.documents import Message, User
from models.views import MessageView
from schemas import payloads as messages


def _views() -> list[MessageView]:
    now = now_iso()
    alice = User(new_id(), "alice@example.com", "alice", "x", now, now, avatar="/api/v1/uploads/abc")
    bob = User(new_id(), "bob@example.com", "bob", "x", now, now)
    chat_id = new_id()
    plain = Message(new_id(), chat_id, alice.id, "Hello", "text", now, now)
    rich = Message(
        new_id(),
        chat_id,
        bob.id,
        "a caption ✓",
        "image",
        now,
        now,
        metadata={"url": "/u/1", "size": 3, "nested": {"list": [1, None, "x"]}, "$where": True},
        reply_to=plain.id,
        client_id="c-1",
        edited_at=now,
    )
    tombstone = Message(new_id(), chat_id, bob.id, "", "text", now, now, deleted=True)
    return [
        MessageView(plain, alice, "read"),
        MessageView(rich, bob, "delivered"),
        MessageView(tombstone, bob),
        MessageView(plain, None, "sent"),  # a sender whose account is gone
    ]


def test_a_page_is_what_the_schema_dumps():
    assert messages._PAGE_DIRECT  # the direct path is the one under test
    views = _views()
    page = messages.dump_page(views)
    assert page == [messages.dump(view) for view in views]
    assert orjson.dumps(page) == orjson.dumps([messages.dump(view) for view in views])  # the key order too
    assert messages.dump_page([]) == []
    assert [messages.dump_one(view) for view in views] == page  # what a send broadcasts and acks


def test_metadata_is_a_copy_as_the_schema_makes_it():
    view = _views()[1]
    (entry,) = messages.dump_page([view])
    assert entry["metadata"] == view.message.metadata and entry["metadata"] is not view.message.metadata
