"""Chats and groups: who is in them, who may change them, and the views members get.

A chat the caller is not a member of answers exactly like one that does not
exist (`ChatNotFound`, 404 `MSG_002`), so chat ids cannot be probed. Every change
is stored first, then the sockets of the members affected are moved in or out of
the chat's room and told.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

from models.auth import Identity
from models.clock import new_id, now_iso
from models.documents import Chat, Member, User
from models.errors import ChatNotFound, Forbidden, UserNotFound, ValidationFailed
from models.events import Event
from models.notifier import Notifier
from models.presence import PresenceService
from models.store.base import DuplicateKey, Store
from models.views import (
    ChatDeletion,
    ChatView,
    MemberRemoved,
    MembersAdded,
    MessageView,
    ParticipantView,
    ReadState,
    Receipt,
    RoleChange,
    delivery_status,
)


def pair_key(a: str, b: str) -> str:
    return ":".join(sorted((a, b)))


def owner_of(chat: Chat) -> str | None:
    """A group's owner: its creator until ownership passes (groups stored before owners existed: the creator)."""
    if chat.type != "group":
        return None
    return chat.owner_id or chat.created_by


class ChatService:
    def __init__(self, store: Store, presence: PresenceService, notifier: Notifier) -> None:
        self.store = store
        self.presence = presence
        self.notifier = notifier

    # lookups
    async def membership(self, chat_id: str, user_id: str) -> tuple[Chat, Member]:
        """The chat and the caller's membership, or `ChatNotFound` for missing and foreign chats alike."""
        member = await self.store.get_member(chat_id, user_id)
        chat = await self.store.get_chat(chat_id) if member is not None else None
        if chat is None or member is None:
            raise ChatNotFound()
        return chat, member

    async def chat_ids(self, user_id: str) -> list[str]:
        """Every chat the user is in: the rooms their sockets join."""
        return await self.store.user_chat_ids(user_id)

    async def group_membership(self, chat_id: str, user_id: str) -> tuple[Chat, Member]:
        chat, member = await self.membership(chat_id, user_id)
        if chat.type != "group":
            raise ChatNotFound("Group not found")
        return chat, member

    async def _existing_users(self, user_ids: Iterable[str]) -> dict[str, User]:
        wanted = list(dict.fromkeys(user_ids))
        users = await self.store.get_users(wanted)
        missing = [uid for uid in wanted if uid not in users]
        if missing:
            raise UserNotFound(f"Unknown user: {missing[0]}", details={"participants": missing})
        return users

    # views
    async def views(self, viewer_id: str | None, pairs: list[tuple[Chat, Member | None]]) -> list[ChatView]:
        """Views of several chats for one viewer, with as few queries as the store allows.

        A fixed number of store calls for the whole page, whatever its length: the
        members and unread counts of every chat come from one `members_and_unread`.
        `viewer_id=None` is a broadcast to many viewers: presence depends on who
        looks (blocks, invisibility), so broadcasts carry none.
        """
        marks = {chat.id: own.last_read_id for chat, own in pairs if own is not None} if viewer_id is not None else {}
        members, unread = await self.store.members_and_unread([chat.id for chat, _ in pairs], viewer_id, marks)
        user_ids = {m.user_id for ms in members.values() for m in ms}
        users = await self.store.get_users(list(user_ids))
        hidden = set()
        if viewer_id is not None:
            hidden = set(await self.store.blocked_ids_of(viewer_id, [u for u in user_ids if u != viewer_id]))
        online = await self.presence.online_among(user_ids) if viewer_id is not None else set()
        last = await self.store.get_messages([chat.last_message_id for chat, _ in pairs if chat.last_message_id])
        out = []
        for chat, own in pairs:
            participants = [
                ParticipantView(
                    users[m.user_id],
                    m,
                    None
                    if viewer_id is None
                    else self.presence.presence_seen(
                        users[m.user_id], viewer_id, m.user_id in online, m.user_id in hidden
                    ),
                )
                for m in members[chat.id]
                if m.user_id in users
            ]
            message = last.get(chat.last_message_id or "")
            last_view = (
                MessageView(message, users.get(message.sender_id), delivery_status(message, members[chat.id]))
                if message
                else None
            )
            name, other = chat.name, None
            if chat.type == "private":
                other = next((p for p in participants if p.id != viewer_id), None)
                name = other.username if other is not None else chat.name
            view = ChatView(chat, name, participants, last_view, other=other)
            if own is not None:
                view.unread_count = unread.get(chat.id, 0)
                view.settings = {"muted": own.muted, "archived": own.archived}
                view.role = own.role
            out.append(view)
        return out

    async def view(self, viewer_id: str | None, chat: Chat, member: Member | None) -> ChatView:
        return (await self.views(viewer_id, [(chat, member)]))[0]

    async def _announce_created(self, chat: Chat, user_ids: list[str]) -> None:
        """`chat_created` to each user with their own view (a private chat is named after the other)."""
        await self.notifier.join_chat(user_ids, chat.id)
        for uid in user_ids:
            member = await self.store.get_member(chat.id, uid)
            await self.notifier.to_users([uid], Event.CHAT_CREATED, await self.view(uid, chat, member))

    async def _announce_updated(self, chat: Chat) -> None:
        view = await self.view(None, chat, None)
        await self.notifier.to_chat(chat.id, Event.CHAT_UPDATED, view)

    # creating
    async def create_private(self, identity: Identity, other_id: str) -> tuple[ChatView, bool]:
        """One chat per pair: a repeat answers the existing chat (created=False)."""
        me = identity.user.id
        if other_id == me:
            raise ValidationFailed(details={"participants": ["A private chat needs one other user."]})
        await self._existing_users([other_id])
        if await self.store.is_blocked(other_id, me):
            raise Forbidden("This user does not accept messages from you")
        key = pair_key(me, other_id)
        existing = await self.store.get_private_chat(key)
        if existing is None:
            now = now_iso()
            chat = Chat(new_id(), "private", me, now, now, now, pair_key=key)
            members = [Member(chat.id, uid, "member", now) for uid in (me, other_id)]
            try:
                await self.store.insert_chat(chat, members)
            except DuplicateKey:  # the other user created it at the same moment
                existing = await self.store.get_private_chat(key)
            else:
                await self._announce_created(chat, [me, other_id])
                return await self.view(me, chat, members[0]), True
        if existing is None:  # pragma: no cover - a duplicate key always has a row behind it
            raise ChatNotFound()
        return await self.view(me, existing, await self.store.get_member(existing.id, me)), False

    async def create_group(self, identity: Identity, data: dict[str, Any]) -> ChatView:
        me = identity.user.id
        others = [uid for uid in dict.fromkeys(data.get("participants", [])) if uid != me]
        await self._existing_users(others)
        now = now_iso()
        chat = Chat(
            new_id(),
            "group",
            me,
            now,
            now,
            now,
            name=data["name"],
            description=data.get("description") or "",
            avatar=data.get("avatar"),
            only_admins_add=data.get("onlyAdminsCanAdd", False),
            owner_id=me,
        )
        members = [Member(chat.id, me, "admin", now)] + [Member(chat.id, uid, "member", now) for uid in others]
        await self.store.insert_chat(chat, members)
        await self._announce_created(chat, [me, *others])
        return await self.view(me, chat, members[0])

    # reading
    async def list(
        self,
        identity: Identity,
        archived: bool | None,
        chat_type: str | None,
        page: int,
        limit: int,
        order_by: str = "last_activity",
        descending: bool = True,
    ) -> tuple[list[ChatView], int]:
        """A page of the caller's chats; `archived=None` lists archived and active ones alike."""
        pairs, total = await self.store.user_chats(
            identity.user.id, archived, chat_type, page, limit, order_by=order_by, descending=descending
        )
        return await self.views(identity.user.id, list(pairs)), total

    async def get(self, identity: Identity, chat_id: str, group: bool = False) -> ChatView:
        lookup = self.group_membership if group else self.membership
        chat, member = await lookup(chat_id, identity.user.id)
        return await self.view(identity.user.id, chat, member)

    # changing
    def _require_admin(self, chat: Chat, member: Member, action: str) -> None:
        """Admins only; the owner is always one (see `set_role`)."""
        if chat.type != "group":
            raise Forbidden(f"Private chats cannot {action}")
        if member.role != "admin":
            raise Forbidden(f"Only group admins may {action}")

    async def update(self, identity: Identity, chat_id: str, changes: dict[str, Any], group: bool = False) -> ChatView:
        chat, member = await (self.group_membership if group else self.membership)(chat_id, identity.user.id)
        if chat.type != "group":
            raise Forbidden("Private chats cannot be renamed or changed")
        self._require_admin(chat, member, "rename or change the group")
        fields = {
            "name": "name",
            "description": "description",
            "avatar": "avatar",
            "onlyAdminsCanAdd": "only_admins_add",
        }
        stored = {fields[k]: v for k, v in changes.items() if k in fields}
        if stored:
            now = now_iso()  # a change is activity: the chat lists move it up as a message would
            chat = await self.store.update_chat(chat.id, {**stored, "updated_at": now, "last_activity": now}) or chat
            await self._announce_updated(chat)
        return await self.view(identity.user.id, chat, member)

    async def delete(self, identity: Identity, chat_id: str, group: bool = False, owner_only: bool = False) -> None:
        """Groups: admins only (`owner_only`: the owner only, as the `/api` door's contract has it).
        Private chats: either member, for both."""
        chat, member = await (self.group_membership if group else self.membership)(chat_id, identity.user.id)
        if chat.type == "group":
            self._require_admin(chat, member, "delete the group")
            if owner_only and owner_of(chat) != identity.user.id:
                raise Forbidden("Only the group's owner may delete it")
        user_ids = [m.user_id for m in await self.store.list_members(chat.id)]
        await self.store.delete_chat(chat.id)
        await self.notifier.to_chat(chat.id, Event.CHAT_DELETED, ChatDeletion(chat.id, identity.user.id))
        await self.notifier.leave_chat(user_ids, chat.id)

    async def set_flag(self, identity: Identity, chat_id: str, flag: str, value: bool) -> ChatView:
        """The caller's own `muted` or `archived` flag."""
        chat, _ = await self.membership(chat_id, identity.user.id)
        member = await self.store.update_member(chat.id, identity.user.id, {flag: int(value)})
        return await self.view(identity.user.id, chat, member)

    # `builtins.list` below: in this class `list` is the method above
    async def add_members(
        self, identity: Identity, chat_id: str, user_ids: builtins.list[str]
    ) -> builtins.list[ParticipantView]:
        chat, member = await self.group_membership(chat_id, identity.user.id)
        if chat.only_admins_add and member.role != "admin":
            raise Forbidden("Only group admins may add members to this group")
        users = await self._existing_users(user_ids)
        current = {m.user_id for m in await self.store.list_members(chat.id)}
        now = now_iso()
        new = [Member(chat.id, uid, "member", now) for uid in users if uid not in current]
        if new:
            await self.store.add_members(new)
            await self.store.update_chat(chat.id, {"updated_at": now, "last_activity": now})
            added = [ParticipantView(users[m.user_id], m, None) for m in new]
            await self.notifier.join_chat([m.user_id for m in new], chat.id)
            arrivals = MembersAdded(chat.id, added, identity.user.id)
            await self.notifier.to_chat(chat.id, Event.PARTICIPANT_ADDED, arrivals)
            for m in new:
                await self.notifier.to_users([m.user_id], Event.CHAT_CREATED, await self.view(m.user_id, chat, m))
            return added
        return []

    async def remove_member(self, identity: Identity, chat_id: str, user_id: str) -> None:
        """Admins remove others, anyone leaves; nobody removes the owner (who may leave)."""
        chat, member = await self.group_membership(chat_id, identity.user.id)
        if user_id != identity.user.id:
            self._require_admin(chat, member, "remove members")
            if user_id == owner_of(chat):
                raise Forbidden("The group's owner cannot be removed")
        if not await self.store.remove_member(chat.id, user_id):
            raise UserNotFound("Not a member of this group")
        await self._after_departure(chat, user_id, identity.user.id)

    async def leave(self, identity: Identity, chat_id: str) -> None:
        await self.remove_member(identity, chat_id, identity.user.id)

    async def _after_departure(self, chat: Chat, user_id: str, by: str) -> None:
        await self.notifier.to_chat(chat.id, Event.PARTICIPANT_REMOVED, MemberRemoved(chat.id, user_id, by))
        await self.notifier.leave_chat([user_id], chat.id)
        remaining = await self.store.list_members(chat.id)
        if not remaining:
            await self.store.delete_chat(chat.id)
            return
        if user_id == owner_of(chat):
            await self._pass_ownership(chat, remaining)
            return
        await self._keep_an_admin(chat, remaining)

    async def _pass_ownership(self, chat: Chat, members: builtins.list[Member]) -> None:
        """The owner left: the longest-standing admin owns the group, else the longest-standing member,
        who becomes an admin too (an owner is always one)."""
        heir = next((m for m in members if m.role == "admin"), members[0])
        if heir.role != "admin":
            await self.store.update_member(chat.id, heir.user_id, {"role": "admin"})
        now = now_iso()
        updated = await self.store.update_chat(
            chat.id, {"owner_id": heir.user_id, "updated_at": now, "last_activity": now}
        )
        await self._announce_updated(updated or chat)

    async def _keep_an_admin(self, chat: Chat, members: builtins.list[Member], passed_over: str | None = None) -> None:
        """A group always has an admin: the longest-standing member (other than `passed_over`) is promoted."""
        if any(m.role == "admin" for m in members):
            return
        heir = next((m for m in members if m.user_id != passed_over), members[0])
        await self.store.update_member(chat.id, heir.user_id, {"role": "admin"})
        await self._announce_updated(await self.store.get_chat(chat.id) or chat)

    async def set_role(self, identity: Identity, chat_id: str, user_id: str, role: str) -> RoleChange:
        chat, member = await self.group_membership(chat_id, identity.user.id)
        self._require_admin(chat, member, "change roles")
        if await self.store.update_member(chat.id, user_id, {"role": role}) is None:
            raise UserNotFound("Not a member of this group")
        members = await self.store.list_members(chat.id)
        others = [m for m in members if m.user_id != user_id]
        if role != "admin" and user_id == owner_of(chat) and others:
            # an owner is always an admin: stepping down as one hands the group on, as leaving does
            await self._pass_ownership(chat, others)
        elif any(m.role == "admin" for m in members):
            await self._announce_updated(chat)
        else:  # the only admin stepped down: the promotion's `chat_updated` tells both changes, once
            await self._keep_an_admin(chat, members, passed_over=user_id)
        return RoleChange(user_id, role)

    async def mark_read(
        self, identity: Identity, chat_id: str, message_id: str | None, origin: str | None = None
    ) -> ReadState:
        """Move the caller's read mark to `message_id` (default: the latest message)."""
        chat, member = await self.membership(chat_id, identity.user.id)
        if message_id is not None:
            message = await self.store.get_message(message_id)
            if message is None or message.chat_id != chat.id:
                raise ValidationFailed(details={"messageId": ["Not a message of this chat."]})
        target = message_id or chat.last_message_id
        at = now_iso()
        if target is not None and await self.store.advance_mark(chat.id, identity.user.id, "last_read_id", target):
            await self.store.advance_mark(chat.id, identity.user.id, "last_delivered_id", target)
            receipt = Receipt(chat.id, target, identity.user.id, "read", at)
            await self.notifier.to_chat(chat.id, Event.MESSAGE_STATUS, receipt, origin)
        member = await self.store.get_member(chat.id, identity.user.id) or member
        unread = await self.store.count_unread(chat.id, identity.user.id, member.last_read_id)
        return ReadState(chat.id, member.last_read_id, unread, at)
