"""The store interface every backend implements.

Services depend on this class only, never on a driver. Each backend translates
its driver's errors into the store errors below in one place (a wrapper around
every public method), and passes the same contract suite
(`tests/test_store_contract.py`):

- a unique field already taken: `DuplicateKey(field)`, which callers act on
  (a taken email is a 409, a repeated client id answers the stored message);
- any other broken constraint (a member of a chat that does not exist, a missing
  required value): `ConstraintViolation`, a bug in the caller, never retried;
- the storage cannot be reached or used (cannot open, disk I/O, locked, connection
  lost, not open): `StoreUnavailable`, which may pass by itself;
- anything else the driver raises: `StoreError`.

Input the store refuses before any driver sees it stays a `TypeError` (a value of
the wrong type) or `ValueError` (a field name a document does not have).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from models.documents import Call, Chat, Member, Message, Page, Session, Upload, User


class StoreError(Exception):
    """The backend failed (connection lost, disk full): a 5xx, never a client error."""


class DuplicateKey(StoreError):
    """A unique field already holds this value; `field` names it (`email`, `username`)."""

    def __init__(self, field: str) -> None:
        self.field = field
        super().__init__(f"duplicate {field}")


class ConstraintViolation(StoreError):
    """A write broke a constraint that is not uniqueness (a reference to nothing, a missing value).

    Distinct from `DuplicateKey` so that no caller mistakes it for "already there"
    and answers a stored document that does not exist.
    """


class StoreUnavailable(StoreError):
    """The storage cannot be reached or used right now: cannot open, disk I/O, locked, connection lost.

    The command line prints it as one line; `/health` answers 503 `SYS_001`.
    """


CHAT_ORDERS = frozenset({"last_activity", "created_at"})


def check_history_order(oldest_first: bool, before: str | None, after: str | None) -> None:
    """`oldest_first` pages by offset from the first message; a cursor pages from an id instead."""
    if oldest_first and (before is not None or after is not None):
        raise ValueError("oldest_first pages by offset: not with before or after")


def check_chat_order(order_by: str) -> None:
    """The same refusal on every backend, before any query: an unknown order is the caller's bug, not a page."""
    if order_by not in CHAT_ORDERS:
        raise ValueError(f"order_by: expected one of {sorted(CHAT_ORDERS)}, got {order_by!r}")


class Store(ABC):
    """Documents of WhatsChat: users, logins, reset tokens, blocks, chats, messages, uploads."""

    name: str = "store"

    @abstractmethod
    async def open(self) -> None:
        """Connect, create or migrate the schema and its indexes (idempotent)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise `StoreError` when the backend cannot answer."""

    # users
    @abstractmethod
    async def insert_user(self, user: User) -> None:
        """Raise `DuplicateKey("email"|"username")` when taken."""

    @abstractmethod
    async def get_user(self, user_id: str) -> User | None: ...

    @abstractmethod
    async def get_users(self, user_ids: list[str]) -> dict[str, User]: ...

    @abstractmethod
    async def get_user_by_email(self, email: str) -> User | None: ...

    @abstractmethod
    async def update_user(self, user_id: str, changes: dict[str, Any]) -> User | None:
        """Apply `changes` (document field names) and return the new document."""

    @abstractmethod
    async def delete_user(self, user_id: str) -> bool: ...

    @abstractmethod
    async def search_users(self, query: str | None, page: int, limit: int, emails: bool = True) -> Page:
        """Users whose username, display name or (with `emails`) email contains `query`, case-insensitive,
        by username."""

    @abstractmethod
    async def count_users(self) -> int: ...

    # sessions (logins)
    @abstractmethod
    async def insert_session(self, session: Session) -> None: ...

    @abstractmethod
    async def get_session(self, session_id: str) -> Session | None: ...

    @abstractmethod
    async def rotate_refresh(self, session_id: str, old_jti: str, new_jti: str, expires_at: str) -> bool:
        """Swap the session's refresh id if it is still `old_jti` and live; atomic."""

    @abstractmethod
    async def revoke_session(self, session_id: str, at: str) -> None: ...

    @abstractmethod
    async def revoke_user_sessions(self, user_id: str, at: str, keep: str | None = None) -> list[str]:
        """Revoke every live session of the user but `keep`; return the revoked ids."""

    # password reset
    @abstractmethod
    async def insert_reset_token(self, token_hash: str, user_id: str, expires_at: str) -> None: ...

    @abstractmethod
    async def consume_reset_token(self, token_hash: str, now: str) -> str | None:
        """Mark the token used and return its user id, once, if unexpired."""

    # blocks
    @abstractmethod
    async def set_block(self, blocker_id: str, blocked_id: str, at: str, blocked: bool) -> None: ...

    @abstractmethod
    async def is_blocked(self, blocker_id: str, blocked_id: str) -> bool: ...

    @abstractmethod
    async def blocked_ids(self, blocker_id: str) -> list[str]:
        """Everyone the user has blocked."""

    @abstractmethod
    async def blocked_ids_of(self, blocked_id: str, blocker_ids: list[str]) -> list[str]:
        """Which of `blocker_ids` have blocked `blocked_id` (one query for a whole page)."""

    # chats and members
    @abstractmethod
    async def insert_chat(self, chat: Chat, members: list[Member]) -> None:
        """Insert a chat with its members; `DuplicateKey("pair_key")` for a second private chat of a pair."""

    @abstractmethod
    async def get_chat(self, chat_id: str) -> Chat | None: ...

    @abstractmethod
    async def get_private_chat(self, pair_key: str) -> Chat | None: ...

    @abstractmethod
    async def update_chat(self, chat_id: str, changes: dict[str, Any]) -> Chat | None: ...

    @abstractmethod
    async def delete_chat(self, chat_id: str) -> None:
        """Remove the chat, its members and its messages."""

    @abstractmethod
    async def get_member(self, chat_id: str, user_id: str) -> Member | None: ...

    @abstractmethod
    async def list_members(self, chat_id: str) -> list[Member]:
        """Members in the order they joined."""

    @abstractmethod
    async def add_members(self, members: list[Member]) -> None:
        """Insert members; ones already present are left as they are.

        `ConstraintViolation`, with none of them added, when a chat does not exist.
        """

    @abstractmethod
    async def remove_member(self, chat_id: str, user_id: str) -> bool: ...

    @abstractmethod
    async def update_member(self, chat_id: str, user_id: str, changes: dict[str, Any]) -> Member | None: ...

    @abstractmethod
    async def advance_mark(self, chat_id: str, user_id: str, mark: str, message_id: str) -> bool:
        """Move `last_read_id` or `last_delivered_id` forward to `message_id`; never back."""

    @abstractmethod
    async def advance_delivered(self, chat_id: str, user_id: str, message_id: str, sender_id: str) -> tuple[bool, bool]:
        """Move the member's `last_delivered_id` forward to `message_id`: (whether it moved, whether first).

        `first`: no member but this one and the sender had the message delivered.
        Decided with the move in one statement where the backend can (SQLite), so two
        members' reports never both see the other; otherwise the others are counted
        before the move, so a race makes two reports `first`, never none.
        """

    @abstractmethod
    async def user_chats(
        self,
        user_id: str,
        archived: bool | None,
        chat_type: str | None,
        page: int,
        limit: int,
        order_by: str = "last_activity",
        descending: bool = True,
    ) -> tuple[list[tuple[Chat, Member]], int]:
        """The user's chats with the user's membership, and the total.

        `order_by`: `"last_activity"` (ties: the newer last message, or the chat's own
        id before one, then the chat id) or `"created_at"` (ties: the chat id);
        latest first, or earliest first when not `descending`, which reverses the
        whole order, ties included, so pages never overlap. Anything else: `ValueError`.
        """

    @abstractmethod
    async def members_and_unread(
        self, chat_ids: list[str], reader_id: str | None = None, read_marks: dict[str, str | None] | None = None
    ) -> tuple[dict[str, list[Member]], dict[str, int]]:
        """What a page of chats shows, for the whole page at once rather than per chat.

        The members of each of `chat_ids` in join order (as `list_members`; none for
        an unknown chat) and, for `reader_id`, the unread count of each chat of
        `read_marks` (chat id -> the reader's last read id), as `count_unread` counts
        it. A constant number of queries whatever the page's length: a chat list
        must not cost a round trip per chat.
        """

    @abstractmethod
    async def user_chat_ids(self, user_id: str) -> list[str]: ...

    @abstractmethod
    async def shared_chat_user_ids(self, user_id: str) -> list[str]:
        """Everyone who shares at least one chat with the user (the user excluded)."""

    # messages
    @abstractmethod
    async def insert_message(self, message: Message) -> None:
        """Insert and make it the chat's last message, atomically.

        `DuplicateKey("client_id")` when the sender already used that client id.
        """

    async def insert_message_if_allowed(self, message: Message) -> bool:
        """`insert_message` if the sender may post in the chat, else False with nothing written.

        Allowed means: a member of the chat and, in a private chat, not blocked by the
        other member. This is the send path's one trip to the store; a backend that can
        check and insert in one statement overrides it (SQLite does).
        """
        if await self.get_member(message.chat_id, message.sender_id) is None:
            return False
        chat = await self.get_chat(message.chat_id)
        if chat is None:
            return False
        if chat.type == "private":
            for member in await self.list_members(chat.id):
                if member.user_id != message.sender_id and await self.is_blocked(member.user_id, message.sender_id):
                    return False
        await self.insert_message(message)
        return True

    @abstractmethod
    async def get_message(self, message_id: str) -> Message | None: ...

    @abstractmethod
    async def get_messages(self, message_ids: list[str]) -> dict[str, Message]: ...

    @abstractmethod
    async def get_message_by_client_id(self, sender_id: str, client_id: str) -> Message | None: ...

    @abstractmethod
    async def update_message(self, message_id: str, changes: dict[str, Any]) -> Message | None: ...

    @abstractmethod
    async def tombstone_message(self, message_id: str, at: str) -> bool:
        """Empty a live message and mark it deleted at `at`; False if it was deleted (or missing) already.

        Two deletes racing each other both find the message live; only the one
        this answers True for announces it, so clients hear of the delete once.
        """

    @abstractmethod
    async def edit_message(self, message_id: str, changes: dict[str, Any]) -> bool:
        """Apply an edit (`changes` carries its `edited_at`) to a live message, unless a newer edit is stored.

        Two edits of one message may commit in either order, on any process; keeping
        the one with the latest `edited_at` makes the store agree with every client
        that keeps the latest `editedAt` it heard of. False: the message is deleted or
        missing, or a newer edit stands (nothing was written).
        """

    @abstractmethod
    async def list_messages(
        self,
        chat_id: str,
        *,
        limit: int,
        offset: int = 0,
        before: str | None = None,
        after: str | None = None,
        search: str | None = None,
        live_only: bool = False,
        oldest_first: bool = False,
    ) -> list[Message]:
        """A page of history, newest first.

        `before`: the newest `limit` messages older than that id. `after`: the
        `limit` messages right after that id (the oldest of them), still newest
        first. `search`: content contains it, case-insensitive, tombstones excluded.
        `live_only`: tombstones (deleted messages) left out. `oldest_first`: ordered
        by id ascending, so offset page 1 is the chat's oldest messages; it pages by
        offset only, so with `before` or `after` it is a `ValueError`.
        """

    @abstractmethod
    async def count_messages(self, chat_id: str, search: str | None = None, live_only: bool = False) -> int:
        """How many messages the chat has: its stored `message_count`, tombstones included, read without counting.

        `live_only`: the messages that are not deleted, counted. `search`: the matches,
        never tombstones, whatever `live_only` says.
        """

    @abstractmethod
    async def count_unread(self, chat_id: str, user_id: str, after_id: str | None) -> int:
        """Messages from others newer than `after_id` (tombstones excluded)."""

    @abstractmethod
    async def messages_after(self, chat_ids: list[str], after_id: str, limit: int) -> list[Message]:
        """Messages newer than `after_id` in any of the chats, oldest first."""

    @abstractmethod
    async def messages_changed_since(
        self, chat_ids: list[str], since: str, before_id: str, limit: int
    ) -> list[Message]:
        """Messages created before `before_id` but edited or deleted after `since`."""

    # uploads
    @abstractmethod
    async def insert_upload(self, upload: Upload) -> None: ...

    @abstractmethod
    async def get_upload(self, upload_id: str) -> Upload | None: ...

    # calls
    @abstractmethod
    async def save_call(self, call: Call) -> None:
        """Insert or replace the call document (and index it for each participant)."""

    @abstractmethod
    async def get_call(self, call_id: str) -> Call | None: ...

    @abstractmethod
    async def user_calls(self, user_id: str, call_type: str | None, page: int, limit: int) -> tuple[list[Call], int]:
        """The user's calls, newest first, and the total."""
