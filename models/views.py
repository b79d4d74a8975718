"""What services return and hand the notifier: documents as one viewer sees them, and what happened.

The store keeps facts; a view adds what depends on who is looking (presence,
their own flags and unread count, the name of a private chat) or on other
documents (the sender of a message, its delivery status from the receipts).
The smaller dataclasses at the end describe one change (an edit, a receipt, a
member added) or answer (a read mark, a catch-up). Services never build wire
dicts: the adapters, and the notifier through the event registry
(`handlers.sio.events`), dump these with the output schemas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.documents import Call, CallParticipant, Chat, Member, Message, User


@dataclass(slots=True)
class ParticipantView:
    user: User
    member: Member
    presence: str | None  # None in broadcasts: it depends on the viewer

    @property
    def id(self) -> str:
        return self.user.id

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def avatar(self) -> str | None:
        return self.user.avatar

    @property
    def role(self) -> str:
        return self.member.role

    @property
    def joined_at(self) -> str:
        return self.member.joined_at


@dataclass(slots=True)
class MessageView:
    message: Message
    sender: User | None
    status: str = "sent"
    # the view as the wire writes it, kept by its first dump (`schemas.payloads.dump_message`):
    # a send's broadcast and its ack share one serialisation
    payload: dict[str, Any] | None = field(default=None, repr=False, compare=False)


@dataclass(slots=True)
class ChatView:
    chat: Chat
    name: str | None
    participants: list[ParticipantView]
    last_message: MessageView | None
    unread_count: int | None = None
    settings: dict[str, bool] | None = None
    role: str | None = None
    other: ParticipantView | None = None  # a private chat's other member, as this viewer sees them


def delivery_status(message: Message, members: list[Member]) -> str:
    """`read` once any other member read past it, `delivered` once any device got it."""
    status = "sent"
    for member in members:
        if member.user_id == message.sender_id:
            continue
        if member.last_read_id is not None and member.last_read_id >= message.id:
            return "read"
        if member.last_delivered_id is not None and member.last_delivered_id >= message.id:
            status = "delivered"
    return status


@dataclass(slots=True)
class CallParticipantView:
    participant: CallParticipant
    user: User | None


@dataclass(slots=True)
class CallView:
    call: Call
    participants: list[CallParticipantView]


# changes and answers ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class MessageEdit:
    """An edit as it was applied: its own content and time (a re-read could show a later edit's)."""

    message_id: str
    chat_id: str
    content: str
    edited_at: str


@dataclass(slots=True)
class MessageDeletion:
    message_id: str
    chat_id: str
    deleted_at: str
    repeated: bool = False  # it was already deleted: this call changed nothing and announced nothing


@dataclass(slots=True)
class Receipt:
    """A member's device received (`delivered`) or the member read (`read`) up to a message."""

    chat_id: str
    message_id: str | None
    user_id: str
    status: str
    at: str
    first: bool = False  # `delivered`: no other member had the message before this one (`MessageService.reached`)


@dataclass(slots=True)
class ReadState:
    """The caller's read mark in a chat after `mark_read`, and what is left unread."""

    chat_id: str
    message_id: str | None
    unread_count: int
    at: str


@dataclass(slots=True)
class TypingNotice:
    chat_id: str
    user_id: str
    username: str
    name: str  # the display name


@dataclass(slots=True)
class CatchUp:
    """What `sync` answers: new messages (oldest first), later changes, and where to continue."""

    messages: list[MessageView]
    changed: list[MessageView]
    has_more: bool
    cursor: str


@dataclass(slots=True)
class ChatDeletion:
    chat_id: str
    deleted_by: str


@dataclass(slots=True)
class MembersAdded:
    chat_id: str
    participants: list[ParticipantView]
    added_by: str


@dataclass(slots=True)
class MemberRemoved:
    chat_id: str
    user_id: str
    removed_by: str


@dataclass(slots=True)
class RoleChange:
    user_id: str
    role: str


@dataclass(slots=True)
class Relay:
    """A signal relayed: to whom, in which call (the sender's answer)."""

    call_id: str
    to: str


@dataclass(slots=True)
class Signal:
    """A WebRTC offer or answer (`sdp`) or ICE candidate (`candidate`) on its way to one participant."""

    call_id: str
    sender_id: str
    to: str
    sdp: Any = None
    candidate: Any = None


@dataclass(slots=True)
class StatusChange:
    """How a user looks to the users who share a chat with them."""

    user_id: str
    status: str
    last_seen: str | None
