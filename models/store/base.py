"""The store interface every backend implements.

Services depend on this class only, never on a driver. Each backend translates
its driver's errors into the two store errors below in one place, and passes the
same contract suite (`tests/test_store_contract.py`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from models.documents import Page, Session, User


class StoreError(Exception):
    """The backend failed (connection lost, disk full): a 5xx, never a client error."""


class DuplicateKey(StoreError):
    """A unique field already holds this value; `field` names it (`email`, `username`)."""

    def __init__(self, field: str) -> None:
        self.field = field
        super().__init__(f"duplicate {field}")


class Store(ABC):
    """Documents of WhatsChat: users, logins, reset tokens, blocks (and later chats)."""

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
    async def search_users(self, query: str | None, page: int, limit: int) -> Page:
        """Users whose username or email contains `query`, case-insensitive, by username."""

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
    async def blocked_ids(self, blocker_id: str) -> list[str]: ...

    @abstractmethod
    async def blocked_ids_of(self, blocked_id: str, blocker_ids: list[str]) -> list[str]:
        """Which of `blocker_ids` have blocked `blocked_id` (one query for a whole page)."""
