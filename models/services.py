"""The domain services of one process, in one container.

Built once by the app factory (`server.services`) and kept under one app key
(`server.keys.SERVICES`); REST handlers and Socket.IO namespaces both reach the
domain through it, so the two transports cannot end up wired to different
instances of a service.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.auth import AuthService
from models.calls import CallService
from models.chats import ChatService
from models.messages import MessageService
from models.presence import PresenceService
from models.uploads import UploadService
from models.users import UserService


@dataclass(frozen=True, slots=True)
class Services:
    """Every domain service; each depends only on the store, the notifier and the services listed before it."""

    auth: AuthService
    presence: PresenceService
    users: UserService
    chats: ChatService
    messages: MessageService
    calls: CallService
    uploads: UploadService
