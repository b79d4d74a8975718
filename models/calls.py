"""Audio and video calls: one state machine for REST and sockets, and the signalling relay.

A call rings, goes on while at least two participants are in it, and ends as
`completed`, `rejected`, `missed` or `cancelled` (see docs/protocol.md for the
table of transitions). Live calls are held here, in this process; every change
is written to the store (the call history) before anyone is told. Media never
passes through the server: it only relays WebRTC offers, answers and ICE
candidates between participants of a live call.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from models.auth import Identity
from models.chats import ChatService
from models.clock import new_id, now_iso, parse_iso
from models.documents import Call, CallParticipant
from models.errors import CallFailed, NotFound, ParticipantsOffline, UserNotFound, ValidationFailed
from models.notifier import Notifier
from models.presence import PresenceService
from models.store.base import Store
from models.views import CallParticipantView, CallView
from schemas.calls import CallOut

log = logging.getLogger(__name__)
_call_out = CallOut()
LIVE = ("ringing", "ongoing")
IN_CALL = ("invited", "answered")  # participant states that can still signal


class CallService:
    def __init__(
        self, store: Store, chats: ChatService, presence: PresenceService, notifier: Notifier, ring_timeout: float
    ) -> None:
        self.store = store
        self.chats = chats
        self.presence = presence
        self.notifier = notifier
        self.ring_timeout = ring_timeout
        self._live: dict[str, Call] = {}
        self._busy: dict[str, str] = {}  # user id -> the live call they ring in or talk in
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._muted: dict[str, set[str]] = {}  # call id -> invitees who blocked the caller: never told of it
        presence.on_last_socket_closed(self.user_gone)

    # views
    async def view(self, call: Call) -> CallView:
        users = await self.store.get_users([p.user_id for p in call.participants])
        return CallView(call, [CallParticipantView(p, users.get(p.user_id)) for p in call.participants])

    async def dump(self, call: Call) -> dict[str, Any]:
        return _call_out.dump(await self.view(call))

    # reading
    async def get(self, identity: Identity, call_id: str) -> Call:
        """A call the caller took part in; any other id answers like a missing one."""
        call = self._live.get(call_id) or await self.store.get_call(call_id)
        if call is None or call.participant(identity.user.id) is None:
            raise NotFound("Call not found")
        return call

    async def history(self, identity: Identity, call_type: str | None, page: int, limit: int) -> tuple[list[Call], int]:
        calls, total = await self.store.user_calls(identity.user.id, call_type, page, limit)
        return [self._live.get(call.id, call) for call in calls], total

    # the state machine
    async def start(self, identity: Identity, data: dict[str, Any]) -> Call:
        me = identity.user.id
        wanted = [uid for uid in dict.fromkeys(data.get("participants") or []) if uid != me]
        if data.get("chatId"):
            await self.chats.membership(data["chatId"], me)
            if not wanted:
                wanted = [m.user_id for m in await self.store.list_members(data["chatId"]) if m.user_id != me]
        if not wanted:
            raise ValidationFailed(details={"participants": ["Name at least one other user, or a chat."]})
        users = await self.store.get_users(wanted)
        missing = [uid for uid in wanted if uid not in users]
        if missing:
            raise UserNotFound(f"Unknown user: {missing[0]}", details={"participants": missing})
        blocked_me = set(await self.store.blocked_ids_of(me, wanted))
        # checked after the last await: from here to registering the call nothing yields, so two
        # concurrent starts by one caller cannot both pass
        if me in self._busy:
            raise CallFailed("You are already in a call")
        now = now_iso()
        participants = [CallParticipant(me, "answered", joined_at=now)]
        for uid in wanted:
            if uid in self._busy:
                participants.append(CallParticipant(uid, "rejected", reason="busy"))
            elif uid in blocked_me or not self.presence.is_online(uid):
                participants.append(CallParticipant(uid, "missed", reason="offline"))
            else:
                participants.append(CallParticipant(uid, "invited"))
        invited = [p.user_id for p in participants if p.status == "invited"]
        if not invited:
            busy = [p.user_id for p in participants if p.reason == "busy"]
            if busy:
                raise CallFailed("Everyone you called is busy", details={"busy": busy})
            raise ParticipantsOffline()
        call = Call(new_id(), data["type"], me, "ringing", now, now, participants, chat_id=data.get("chatId"))
        self._live[call.id] = call
        for uid in (me, *invited):
            self._busy[uid] = call.id
        if blocked_me:
            self._muted[call.id] = blocked_me
        self._timers[call.id] = asyncio.ensure_future(self._ring_out(call.id))
        await self.store.save_call(call)
        payload = await self.dump(call)
        await self.notifier.to_users(invited, "incoming_call", payload)
        await self.notifier.to_users(self._audience(call), "call_status_update", payload)
        return call

    def _live_participant(self, identity: Identity, call_id: str) -> tuple[Call, CallParticipant]:
        call = self._live.get(call_id)
        participant = call.participant(identity.user.id) if call else None
        if call is None or participant is None:
            raise NotFound("Call not found or already over")
        return call, participant

    async def answer(self, identity: Identity, call_id: str) -> Call:
        call, me = self._live_participant(identity, call_id)
        if me.status != "invited":
            raise CallFailed(f"You cannot answer a call you have {me.status}")
        now = now_iso()
        me.status, me.joined_at = "answered", now
        if call.status == "ringing":
            call.status, call.started_at = "ongoing", now
        return await self._changed(call)

    async def reject(self, identity: Identity, call_id: str) -> Call:
        call, me = self._live_participant(identity, call_id)
        if me.status != "invited":
            raise CallFailed(f"You cannot reject a call you have {me.status}")
        me.status = "rejected"
        self._busy.pop(me.user_id, None)
        return await self._changed(call)

    async def end(self, identity: Identity, call_id: str) -> Call:
        """Leave the call; the caller hanging up a call nobody answered cancels it."""
        call, me = self._live_participant(identity, call_id)
        if me.status not in IN_CALL:
            raise CallFailed("You are no longer in this call")
        self._leave(call, me)
        if call.status == "ringing" and me.user_id == call.initiator_id:
            call.status = "cancelled"
        return await self._changed(call)

    def _leave(self, call: Call, participant: CallParticipant) -> None:
        if participant.status == "invited":
            participant.status = "rejected"
        else:
            participant.status, participant.left_at = "left", now_iso()
        self._busy.pop(participant.user_id, None)

    async def user_gone(self, user_id: str) -> None:
        """A participant whose last socket closed leaves their call (or stops ringing)."""
        call_id = self._busy.get(user_id)
        call = self._live.get(call_id) if call_id else None
        participant = call.participant(user_id) if call else None
        if call is None or participant is None:
            return
        if participant.status == "invited":
            participant.status, participant.reason = "missed", "offline"
            self._busy.pop(user_id, None)
        else:
            self._leave(call, participant)
            if call.status == "ringing" and user_id == call.initiator_id:
                call.status = "cancelled"
        await self._changed(call)

    async def _ring_out(self, call_id: str) -> None:
        await asyncio.sleep(self.ring_timeout)
        call = self._live.get(call_id)
        if call is None:
            return
        self._timers.pop(call_id, None)
        ringing = [p for p in call.participants if p.status == "invited"]
        if not ringing:  # everyone answered or refused already: nothing changes, nobody is told
            return
        for participant in ringing:
            participant.status = "missed"
            self._busy.pop(participant.user_id, None)
        await self._changed(call)

    def _settle(self, call: Call) -> None:
        """Decide whether the call is over, from its participants' states."""
        if call.status in LIVE:
            ringing = any(p.status == "invited" for p in call.participants)
            answered = [p for p in call.participants if p.status == "answered"]
            if call.status == "ringing" and not ringing:
                call.status = (
                    "rejected" if any(p.status == "rejected" and not p.reason for p in call.participants) else "missed"
                )
            elif call.status == "ongoing" and len(answered) < 2 and not ringing:
                call.status = "completed"
        if call.status in LIVE:
            return
        now = now_iso()
        for participant in call.participants:
            if participant.status == "answered":
                participant.status, participant.left_at = "left", now
            elif participant.status == "invited":
                participant.status = "missed"
            self._busy.pop(participant.user_id, None)
        call.ended_at = now
        if call.started_at is not None:
            call.duration = round((parse_iso(now) - parse_iso(call.started_at)).total_seconds())
        self._live.pop(call.id, None)
        timer = self._timers.pop(call.id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _changed(self, call: Call) -> Call:
        """Settle, store, then tell every participant."""
        self._settle(call)
        call.updated_at = now_iso()
        await self.store.save_call(call)
        payload = await self.dump(call)
        await self.notifier.to_users(self._audience(call), "call_status_update", payload)
        if call.status not in LIVE:
            self._muted.pop(call.id, None)
        return call

    def _audience(self, call: Call) -> list[str]:
        """Every participant but those who blocked the caller (to them the caller cannot reach them)."""
        muted = self._muted.get(call.id, ())
        return [p.user_id for p in call.participants if p.user_id not in muted]

    # signalling
    async def relay(self, identity: Identity, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """Forward an offer, answer or ICE candidate to one participant of the same live call."""
        call, me = self._live_participant(identity, data["callId"])
        target = call.participant(data["to"])
        if me.status not in IN_CALL:
            raise CallFailed("You are no longer in this call")
        if target is None or target.status not in IN_CALL or target.user_id == me.user_id:
            raise CallFailed("That user is not in this call")
        payload = {key: value for key, value in data.items() if key != "to"}
        await self.notifier.to_users([target.user_id], event, {**payload, "from": me.user_id, "to": target.user_id})
        return {"callId": call.id, "to": target.user_id}

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
