"""The documents the store keeps, as plain typed records.

Services read and write these; schemas in `schemas/` turn them into the wire
format. Times are ISO 8601 strings in the contract's format (sortable as text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["user", "admin"]
PresenceSetting = Literal["online", "away", "busy", "invisible"]


@dataclass(slots=True)
class User:
    id: str
    email: str
    username: str
    password_hash: str
    created_at: str
    updated_at: str
    phone: str | None = None
    avatar: str | None = None
    status: str = ""
    presence_setting: PresenceSetting = "online"
    last_seen: str | None = None
    role: Role = "user"


@dataclass(slots=True)
class Session:
    """One login: the refresh token chain and every access token issued from it."""

    id: str
    user_id: str
    refresh_jti: str
    created_at: str
    expires_at: str
    revoked_at: str | None = None


@dataclass(slots=True)
class Page:
    """One page of a list and the total it was cut from."""

    items: list[Any]
    total: int
    page: int
    limit: int

    @property
    def pages(self) -> int:
        return (self.total + self.limit - 1) // self.limit if self.limit else 0
