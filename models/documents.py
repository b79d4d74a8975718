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
    display_name: str | None = None  # shown beside the unique username; None: show the username

    @property
    def name(self) -> str:
        """What people are called in chats: the display name, else the username."""
        return self.display_name or self.username


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


ChatType = Literal["private", "group"]
MemberRole = Literal["admin", "member"]
MessageType = Literal["text", "image", "video", "audio", "file"]


@dataclass(slots=True)
class Chat:
    """A private chat (exactly two members, one per pair) or a group."""

    id: str
    type: ChatType
    created_by: str
    created_at: str
    updated_at: str
    last_activity: str
    name: str | None = None
    description: str = ""
    avatar: str | None = None
    pair_key: str | None = None  # private chats: the two user ids, sorted, joined by ":"
    only_admins_add: bool = False
    last_message_id: str | None = None
    message_count: int = 0
    owner_id: str | None = None  # groups only; None for groups stored before it existed: `created_by` stands in


@dataclass(slots=True)
class Member:
    """One user's place in a chat, with their own flags and receipt marks."""

    chat_id: str
    user_id: str
    role: MemberRole
    joined_at: str
    muted: bool = False
    archived: bool = False
    last_read_id: str | None = None
    last_delivered_id: str | None = None


@dataclass(slots=True)
class Message:
    id: str
    chat_id: str
    sender_id: str
    content: str
    type: MessageType
    created_at: str
    updated_at: str
    metadata: dict[str, Any] | None = None
    reply_to: str | None = None
    client_id: str | None = None
    edited_at: str | None = None
    deleted: bool = False


@dataclass(slots=True)
class Upload:
    id: str
    owner_id: str
    filename: str
    size: int
    mime_type: str
    purpose: str
    created_at: str


CallType = Literal["audio", "video"]
CallStatus = Literal["ringing", "ongoing", "completed", "rejected", "missed", "cancelled"]
ParticipantStatus = Literal["invited", "answered", "rejected", "left", "missed"]


@dataclass(slots=True)
class CallParticipant:
    user_id: str
    status: ParticipantStatus
    joined_at: str | None = None
    left_at: str | None = None
    reason: str | None = None  # why a participant never joined: "busy" or "offline"


@dataclass(slots=True)
class Call:
    id: str
    type: CallType
    initiator_id: str
    status: CallStatus
    created_at: str
    updated_at: str
    participants: list[CallParticipant]
    chat_id: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration: int | None = None

    def participant(self, user_id: str) -> CallParticipant | None:
        return next((p for p in self.participants if p.user_id == user_id), None)
