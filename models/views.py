"""Documents as one viewer sees them: what the output schemas dump.

The store keeps facts; a view adds what depends on who is looking (presence,
their own flags and unread count, the name of a private chat) or on other
documents (the sender of a message, its delivery status from the receipts).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(slots=True)
class ChatView:
    chat: Chat
    name: str | None
    participants: list[ParticipantView]
    last_message: MessageView | None
    unread_count: int | None = None
    settings: dict[str, bool] | None = None
    role: str | None = None


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
