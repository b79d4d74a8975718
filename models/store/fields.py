"""Which fields the `changes` of an update may name, and what values they may hold: one rule for every backend.

`update_user`, `update_chat`, `update_member` and `update_message` take
`changes` as document field names. SQLite writes those names into the SQL text
and MongoDB into a `$set`, so a name neither knows would be an injection on one
and a stray field (or an operator) on the other. Both check here first: a name
that is not a changeable field of the document is a `ValueError`, a value that
is not plain (a string, number, boolean or null) a `TypeError`; JSON-object
fields (`Message.metadata`) take an object or null instead.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from models.documents import Chat, Member, Message, User


def field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


# ids, owners and creation times are fixed once a document exists
USER_FIELDS = field_names(User) - {"id", "created_at"}
CHAT_FIELDS = field_names(Chat) - {"id"}
MEMBER_FIELDS = field_names(Member) - {"chat_id", "user_id"}
MESSAGE_FIELDS = field_names(Message) - {"id"}
OBJECT_FIELDS = frozenset({"metadata"})

_PLAIN = (str, int, float, bool, type(None))


def check_changes(changes: dict[str, Any], allowed: frozenset[str]) -> None:
    """Refuse `changes` unless every name is in `allowed` and every value fits its field."""
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"not document fields: {sorted(unknown)}")
    for name, value in changes.items():
        if name in OBJECT_FIELDS:
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"{name}: expected an object, got {type(value).__name__}")
        elif not isinstance(value, _PLAIN):
            raise TypeError(f"{name}: expected a plain value, got {type(value).__name__}")
