"""Messages: send, edit, delete, history, catching up, receipts and typing.

A message is in the store before anyone hears of it: the ack and `new_message`
go out only after the insert has committed, so nothing acknowledged is lost. A
`clientId` makes a send idempotent: a repeat returns the stored message and
reaches nobody twice.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from models.auth import Identity
from models.chats import ChatService
from models.clock import id_time, iso, new_id, now_iso, parse_iso
from models.documents import Message
from models.errors import ChatNotFound, Forbidden, MessageRejected, ValidationFailed
from models.events import Event
from models.notifier import Notifier
from models.ratelimit import EventBudgets
from models.store.base import DuplicateKey, Store
from models.views import (
    CatchUp,
    MessageDeletion,
    MessageEdit,
    MessageView,
    ReadState,
    Receipt,
    TypingNotice,
    delivery_status,
)

_ID = re.compile(r"^[0-9a-f]{24}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def id_floor(after: str) -> tuple[str, str]:
    """A sync cursor (message id or ISO time) as (id bound, ISO time of that bound).

    Ids begin with their creation time in milliseconds, so a time converts to the
    largest id of that millisecond and an id to the time it was made.
    """
    try:
        if _ID.match(after):
            return after, iso(_EPOCH + timedelta(milliseconds=int(after[:12], 16)))
        moment = parse_iso(after)
        if moment.tzinfo is None:  # no offset: UTC, like every time on the wire (not the server's zone)
            moment = moment.replace(tzinfo=UTC)
        ms = max(0, (moment - _EPOCH) // timedelta(milliseconds=1))  # exact; before the epoch means everything
        return f"{ms:012x}ffffffffffff", iso(_EPOCH + timedelta(milliseconds=ms))
    except (ValueError, OverflowError):  # not a time, or past year 9999 in UTC
        raise ValidationFailed(details={"after": ["A message id or an ISO 8601 time."]}) from None


class MessageService:
    def __init__(self, store: Store, chats: ChatService, notifier: Notifier, budgets: EventBudgets) -> None:
        self.store = store
        self.chats = chats
        self.notifier = notifier
        self.budgets = budgets

    async def _own_message(self, identity: Identity, message_id: str) -> Message:
        """The message if the caller is in its chat; missing and foreign answer alike."""
        message = await self.store.get_message(message_id)
        if message is None or await self.store.get_member(message.chat_id, identity.user.id) is None:
            raise ChatNotFound("Message not found")
        return message

    async def send(
        self, identity: Identity, data: dict[str, Any], origin: str | None = None
    ) -> tuple[MessageView, bool]:
        """Store and deliver a message; answers its view, and False for a repeated `clientId`.

        The common case is one trip to the store: the membership and block checks
        travel with the insert. Only a refused insert (or a reply, whose target must
        be checked) takes the slow path, which finds the precise reason. The view
        handed to `new_message` is the one answered, so the adapter's dump of it is
        the broadcast's (`schemas.payloads.dump_one` keeps it): serialised once.
        """
        await self.budgets.charge(identity.user.id, "messages")
        me = identity.user
        chat_id = data["chatId"]
        message_id = new_id()
        now = id_time(message_id)  # the id and `createdAt` tell the same time, so `sync` by either agrees
        message = Message(
            id=message_id,
            chat_id=chat_id,
            sender_id=me.id,
            content=data.get("content", ""),
            type=data.get("type", "text"),
            created_at=now,
            updated_at=now,
            metadata=data.get("metadata"),
            reply_to=data.get("replyTo"),
            client_id=data.get("clientId"),
        )
        try:
            if message.reply_to:
                await self._check_sender(me.id, chat_id, message.client_id)
                replied = await self.store.get_message(message.reply_to)
                if replied is None or replied.chat_id != chat_id:
                    raise ValidationFailed(details={"replyTo": ["Not a message of this chat."]})
            if not await self.store.insert_message_if_allowed(message):
                await self._check_sender(me.id, chat_id, message.client_id)
                # allowed after all: a membership or block changed in between; the insert decides
                if not await self.store.insert_message_if_allowed(message):
                    raise ChatNotFound()
        except DuplicateKey:  # a repeated clientId, or the same one raced in on another socket
            existing = await self.store.get_message_by_client_id(me.id, message.client_id or "")
            if existing is None:
                raise
            return await self._view(existing), False
        view = MessageView(message, me, "sent")
        await self.notifier.to_chat(chat_id, Event.NEW_MESSAGE, view, origin)
        return view, True

    async def _check_sender(self, user_id: str, chat_id: str, client_id: str | None) -> None:
        """Why a send is refused, in the order the contract gives.

        Not a member: `MSG_002`. A repeated `clientId` answers the stored message
        even where a block would refuse a new one. Blocked by the other member of a
        private chat: `FORBIDDEN`.
        """
        chat, _ = await self.chats.membership(chat_id, user_id)
        if client_id and await self.store.get_message_by_client_id(user_id, client_id) is not None:
            raise DuplicateKey("client_id")
        if chat.type == "private":
            members = await self.store.list_members(chat.id)
            other = next((m.user_id for m in members if m.user_id != user_id), None)
            if other is not None and await self.store.is_blocked(other, user_id):
                raise Forbidden("This user does not accept messages from you")

    async def _view(self, message: Message) -> MessageView:
        sender = await self.store.get_user(message.sender_id)
        members = await self.store.list_members(message.chat_id)
        return MessageView(message, sender, delivery_status(message, members))

    async def edit(
        self, identity: Identity, message_id: str, changes: dict[str, Any], origin: str | None = None
    ) -> MessageView:
        await self.budgets.charge(identity.user.id, "messages")
        message = await self._own_message(identity, message_id)
        if message.sender_id != identity.user.id:
            raise Forbidden("You can only edit your own messages")
        if message.deleted:
            raise MessageRejected("A deleted message cannot be edited")
        now = now_iso()
        update = {"content": changes["content"], "edited_at": now, "updated_at": now}
        if "metadata" in changes:
            update["metadata"] = changes["metadata"]
        applied = await self.store.edit_message(message.id, update)
        current = await self.store.get_message(message.id) or message
        if not applied:
            if current.deleted:  # deleted while this edit was on its way
                raise MessageRejected("A deleted message cannot be edited")
            return await self._view(current)  # a newer edit stands: this one is already superseded, nobody hears it
        # this edit's own content and time: a re-read could show a concurrent edit's, announced twice
        edit = MessageEdit(message.id, message.chat_id, update["content"], now)
        await self.notifier.to_chat(message.chat_id, Event.MESSAGE_EDITED, edit, origin)
        return await self._view(current)

    async def delete(self, identity: Identity, message_id: str, origin: str | None = None) -> MessageDeletion:
        """The sender, or an admin of the group; the message stays as a tombstone."""
        message = await self._own_message(identity, message_id)
        if message.sender_id != identity.user.id:
            chat = await self.store.get_chat(message.chat_id)
            member = await self.store.get_member(message.chat_id, identity.user.id)
            if chat is None or chat.type != "group" or member is None or member.role != "admin":
                raise Forbidden("Only the sender or a group admin may delete a message")
        deletion = MessageDeletion(message.id, message.chat_id, message.updated_at, repeated=True)
        if not message.deleted:
            now = now_iso()
            if await self.store.tombstone_message(message.id, now):
                deletion.deleted_at, deletion.repeated = now, False
                await self.notifier.to_chat(message.chat_id, Event.MESSAGE_DELETED, deletion, origin)
            else:  # another delete won the race: answer with its time, announce nothing
                current = await self.store.get_message(message.id)
                deletion.deleted_at = current.updated_at if current is not None else now
        return deletion

    async def history(
        self, identity: Identity, chat_id: str, query: dict[str, Any]
    ) -> tuple[list[MessageView], int, bool]:
        """A page of the chat, newest first, with the chat's total and whether more lie beyond it.

        By cursor, "beyond" is away from the cursor (older for `before`, newer for
        `after`), found by reading one message more than asked.
        """
        chat, _ = await self.chats.membership(chat_id, identity.user.id)
        limit, page = query["limit"], query["page"]
        before, after, search = query.get("before"), query.get("after"), query.get("search")
        # the `/api` door: without tombstones, and by page from either end
        live_only, oldest_first = query.get("live_only", False), query.get("oldest_first", False)
        cursor = before is not None or after is not None
        messages = await self.store.list_messages(
            chat.id,
            limit=limit + 1 if cursor else limit,
            offset=0 if cursor else (page - 1) * limit,
            before=before,
            after=after,
            search=search,
            live_only=live_only,
            oldest_first=oldest_first,
        )
        if search or live_only:
            total = await self.store.count_messages(chat.id, search, live_only=live_only)
        else:  # the chat document already carries its count (what `count_messages` answers without a search)
            total = chat.message_count
        if cursor:
            more = len(messages) > limit
            if more:  # the extra one is the farthest from the cursor: the newest after it, the oldest before it
                messages = messages[1:] if before is None else messages[:-1]
        else:
            more = page * limit < total
        return await self._views(chat.id, messages), total, more

    async def _views(self, chat_id: str, messages: list[Message]) -> list[MessageView]:
        members = await self.store.list_members(chat_id)
        senders = await self.store.get_users([m.sender_id for m in messages])
        return [MessageView(m, senders.get(m.sender_id), delivery_status(m, members)) for m in messages]

    async def _views_across(self, messages: list[Message]) -> list[MessageView]:
        """Views of messages from several chats, in the order given."""
        by_chat: dict[str, list[Message]] = defaultdict(list)
        for message in messages:
            by_chat[message.chat_id].append(message)
        views = {}
        for chat_id, group in by_chat.items():
            for view in await self._views(chat_id, group):
                views[view.message.id] = view
        return [views[m.id] for m in messages]

    async def sync(self, identity: Identity, data: dict[str, Any]) -> CatchUp:
        """What the caller missed since `after`: new messages (oldest first) and later edits and deletes."""
        # budgeted: a client firing syncs it never reads must not make us build answers forever
        await self.budgets.charge(identity.user.id, "reads")
        bound, since = id_floor(data["after"])
        if data.get("chatId"):
            chat, _ = await self.chats.membership(data["chatId"], identity.user.id)
            chat_ids = [chat.id]
        else:
            chat_ids = await self.store.user_chat_ids(identity.user.id)
        limit = data["limit"]
        new = await self.store.messages_after(chat_ids, bound, limit + 1)
        changed = await self.store.messages_changed_since(chat_ids, since, bound, limit)
        has_more = len(new) > limit
        new = new[:limit]
        return CatchUp(
            messages=await self._views_across(new),
            changed=await self._views_across(changed),
            has_more=has_more,
            cursor=new[-1].id if new else bound if _ID.match(data["after"]) else data["after"],
        )

    async def delivered(self, identity: Identity, message_id: str) -> Receipt:
        """A Socket.IO client reports that a message reached the caller's device."""
        await self.budgets.charge(identity.user.id, "reads")
        message = await self._own_message(identity, message_id)
        return await self.reached(identity.user.id, message.chat_id, message.id, message.sender_id)

    async def reached(self, user_id: str, chat_id: str, message_id: str, sender_id: str) -> Receipt:
        """A message reached a live connection of `user_id`: the sender hears `delivered`.

        Called by a door that knows it wrote the message to that user's connection
        (the plain WebSocket, which settled membership by the room it went to), and
        for a Socket.IO client's `message_delivered`. Each member's mark only moves
        forward, and the sender hears of every member it moved for; `first` says
        whether no other member had the message yet, so a door that promises one
        `delivered` per message (the plain WebSocket) keeps to it
        (`Store.advance_delivered` decides it with the move).
        """
        receipt = Receipt(chat_id, message_id, user_id, "delivered", now_iso())
        if sender_id == user_id:
            return receipt
        moved, receipt.first = await self.store.advance_delivered(chat_id, user_id, message_id, sender_id)
        if moved:
            await self.notifier.to_users([sender_id], Event.MESSAGE_STATUS, receipt)
        return receipt
        async with self._delivery_locks[hash(chat_id) % len(self._delivery_locks)]:
            members = await self.store.list_members(chat_id)
            receipt.first = not any(
                m.last_delivered_id is not None and m.last_delivered_id >= message_id
                for m in members
                if m.user_id not in (user_id, sender_id)
            )
            if await self.store.advance_mark(chat_id, user_id, "last_delivered_id", message_id):
                await self.notifier.to_users([sender_id], Event.MESSAGE_STATUS, receipt)
        return receipt
        others = [m for m in await self.store.list_members(chat_id) if m.user_id not in (user_id, sender_id)]
        if not any(m.last_delivered_id is not None and m.last_delivered_id >= message_id for m in others):
            await self.notifier.to_users([sender_id], Event.MESSAGE_STATUS, receipt)
        return receipt

    async def mark_read(
        self, identity: Identity, chat_id: str, message_id: str | None, origin: str | None = None
    ) -> ReadState:
        await self.budgets.charge(identity.user.id, "reads")
        return await self.chats.mark_read(identity, chat_id, message_id, origin)

    async def typing(self, identity: Identity, chat_id: str, started: bool) -> TypingNotice:
        """Relayed to the other members' sockets (not the typist's own devices), never stored;
        the first thing dropped for slow readers."""
        await self.budgets.charge(identity.user.id, "typing")
        chat, _ = await self.chats.membership(chat_id, identity.user.id)
        notice = TypingNotice(chat.id, identity.user.id, identity.user.username, identity.user.name)
        others = [m.user_id for m in await self.store.list_members(chat.id) if m.user_id != identity.user.id]
        await self.notifier.to_users(others, Event.TYPING_START if started else Event.TYPING_STOP, notice)
        return notice
