"""Message events (`/messages` and `/`): thin handlers over `MessageService`.

The socket that sent an event is its `origin`: it gets the ack, and every other
socket in the chat (the sender's other devices included) gets the broadcast;
typing goes to the other members only.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema

from handlers.sio.base import BaseNamespace
from models.auth import Identity
from schemas import messages as s
from schemas.events import MessageDeleted, MessageStatus, ReadMark, Typing
from schemas.payloads import dump_catch_up, dump_one

_deleted, _status, _read, _typing = MessageDeleted(), MessageStatus(), ReadMark(), Typing()


class MessageEvents(BaseNamespace):
    event_schemas: dict[str, type[Schema]] = {
        "send_message": s.SendMessage,
        "edit_message": s.EditMessageEvent,
        "delete_message": s.MessageRef,
        "typing_start": s.ChatRef,
        "typing_stop": s.ChatRef,
        "mark_read": s.MarkRead,
        "message_delivered": s.MessageRef,
        "sync": s.Sync,
    }

    async def on_send_message(self, sid: str, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        view, _ = await self.services.messages.send(identity, data, origin=sid)
        return dump_one(view)  # the dict `new_message` carried: serialised once, when it was broadcast

    async def on_edit_message(self, sid: str, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        return dump_one(await self.services.messages.edit(identity, data["messageId"], data, origin=sid))

    async def on_delete_message(self, sid: str, identity: Identity, data: dict[str, Any]) -> Any:
        return _deleted.dump(await self.services.messages.delete(identity, data["messageId"], origin=sid))

    async def on_typing_start(self, sid: str, identity: Identity, data: dict[str, Any]) -> Any:
        return _typing.dump(await self.services.messages.typing(identity, data["chatId"], True))

    async def on_typing_stop(self, sid: str, identity: Identity, data: dict[str, Any]) -> Any:
        return _typing.dump(await self.services.messages.typing(identity, data["chatId"], False))

    async def on_mark_read(self, sid: str, identity: Identity, data: dict[str, Any]) -> Any:
        marked = await self.services.messages.mark_read(identity, data["chatId"], data["messageId"], origin=sid)
        return _read.dump(marked)

    async def on_message_delivered(self, sid: str, identity: Identity, data: dict[str, Any]) -> Any:
        return _status.dump(await self.services.messages.delivered(identity, data["messageId"]))

    async def on_sync(self, sid: str, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        return dump_catch_up(await self.services.messages.sync(identity, data))
