"""Audio and video calls: one state machine for REST and sockets, and the signalling relay.

A call rings, goes on while at least two participants are in it, and ends as
`completed`, `rejected`, `missed` or `cancelled` (see docs/protocol.md for the
table of transitions). Live calls are kept in a registry (`models.live_calls`):
this process's memory by default, or Redis so that several processes share
them. Every transition reads, changes and writes the call under that call's
lock, so two processes cannot both answer or both end it; every change is
written to the store (the call history) before anyone is told. Ring timeouts
are deadlines in the registry that a background loop claims, each exactly
once, in whichever process polls first. Media never passes through the server:
it only relays WebRTC offers, answers and ICE candidates between participants
of a live call.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from models.auth import Identity
from models.chats import ChatService
from models.clock import new_id, now_iso, parse_iso
from models.documents import Call, CallParticipant
from models.errors import CallFailed, NotFound, ParticipantsOffline, UserNotFound, ValidationFailed
from models.events import Event
from models.live_calls import IN_CALL, LIVE, CallLock, LiveCall, LiveCalls, MemoryLiveCalls
from models.notifier import Notifier
from models.presence import PresenceService
from models.store.base import Store
from models.views import CallParticipantView, CallView, Relay, Signal

log = logging.getLogger(__name__)
RETRY_RING = 0.5  # seconds before a ring timeout that failed to apply is tried again
MAX_POLL_BACKOFF = 2.0  # the longest pause between polls while the registry does not answer

Change = Callable[[Call, CallParticipant], bool | None]  # False: nothing changes, nobody is told


class CallService:
    def __init__(
        self,
        store: Store,
        chats: ChatService,
        presence: PresenceService,
        notifier: Notifier,
        ring_timeout: float,
        live: LiveCalls | None = None,
    ) -> None:
        self.store = store
        self.chats = chats
        self.presence = presence
        self.notifier = notifier
        self.ring_timeout = ring_timeout
        self.live = live if live is not None else MemoryLiveCalls()
        self._ring_loop: asyncio.Task[None] | None = None
        self._closed = False
        presence.on_last_socket_closed(self.user_gone)

    # views
    async def view(self, call: Call) -> CallView:
        """The call with its participants' names: what the wire shows.

        The actions below answer the `Call` itself (the state machine's document);
        an adapter asks for its view here, as it does of `UserService.view`.
        """
        return (await self.views([call]))[0]

    async def views(self, calls: list[Call]) -> list[CallView]:
        """Views of several calls, their users read in one query."""
        users = await self.store.get_users(list({p.user_id for call in calls for p in call.participants}))
        return [
            CallView(call, [CallParticipantView(p, users.get(p.user_id)) for p in call.participants]) for call in calls
        ]

    # reading
    async def get(self, identity: Identity, call_id: str) -> Call:
        """A call the caller took part in; any other id answers like a missing one."""
        entry = await self.live.get(call_id)
        call = entry.call if entry is not None else await self.store.get_call(call_id)
        if call is None or call.participant(identity.user.id) is None:
            raise NotFound("Call not found")
        return call

    async def history(self, identity: Identity, call_type: str | None, page: int, limit: int) -> tuple[list[Call], int]:
        calls, total = await self.store.user_calls(identity.user.id, call_type, page, limit)
        live = await self.live.get_many([call.id for call in calls])
        return [live.get(call.id, call) for call in calls], total

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
        reachable = {uid for uid in wanted if uid not in blocked_me and await self._is_online(uid)}
        self._ensure_ring_loop()
        call_id = new_id()
        async with self.live.lock(call_id) as lock:
            # busy marks are claimed atomically in the registry: of two concurrent starts (in any
            # processes) by one caller, or to one invitee, only one gets the mark
            if not await self.live.claim(lock, [me]):
                raise CallFailed("You are already in a call")
            claimed = [me]
            try:
                invited = set(await self.live.claim(lock, [uid for uid in wanted if uid in reachable]))
                claimed.extend(invited)
                # reachable but not claimed: busy elsewhere; the unreachable are busy, else offline
                busy = (reachable - invited) | await self.live.busy(uid for uid in wanted if uid not in reachable)
                call = self._new_call(call_id, me, wanted, invited, busy, data)
                entry = LiveCall(call, frozenset(blocked_me))
                await self.live.commit(lock, entry, ring_after=self.ring_timeout)
            except BaseException:  # the call did not start: whoever it marked busy is free again
                await self.live.release(lock, claimed)
                raise
            await self.store.save_call(call)
            view = await self.view(call)
            ringing = [p.user_id for p in call.participants if p.status == "invited"]
            await self.notifier.to_users(ringing, Event.INCOMING_CALL, view)
            await self.notifier.to_users(self._audience(entry), Event.CALL_STATUS_UPDATE, view)
            return call

    @staticmethod
    def _new_call(
        call_id: str, me: str, wanted: list[str], invited: set[str], busy: set[str], data: dict[str, Any]
    ) -> Call:
        """The ringing call, or the reason nobody can be rung."""
        now = now_iso()
        participants = [CallParticipant(me, "answered", joined_at=now)]
        for uid in wanted:
            if uid in invited:
                participants.append(CallParticipant(uid, "invited"))
            elif uid in busy:
                participants.append(CallParticipant(uid, "rejected", reason="busy"))
            else:
                participants.append(CallParticipant(uid, "missed", reason="offline"))
        if not invited:
            busy_ids = [p.user_id for p in participants if p.reason == "busy"]
            if busy_ids:
                raise CallFailed("Everyone you called is busy", details={"busy": busy_ids})
            raise ParticipantsOffline()
        return Call(call_id, data["type"], me, "ringing", now, now, participants, chat_id=data.get("chatId"))

    async def _is_online(self, user_id: str) -> bool:
        online: bool | Awaitable[bool] = self.presence.is_online(user_id)
        if inspect.isawaitable(online):  # presence shared across processes answers asynchronously
            online = await online
        return bool(online)

    async def _transition(self, call_id: str, user_id: str, change: Change) -> Call:
        """Read, change and write one live call under its lock; `change` may raise to refuse."""
        async with self.live.lock(call_id) as lock:
            entry = await self.live.get(call_id)
            participant = entry.call.participant(user_id) if entry is not None else None
            if entry is None or participant is None:
                raise NotFound("Call not found or already over")
            if change(entry.call, participant) is False:
                return entry.call
            return await self._changed(lock, entry)

    async def answer(self, identity: Identity, call_id: str) -> Call:
        def answer(call: Call, me: CallParticipant) -> None:
            if me.status != "invited":
                raise CallFailed(f"You cannot answer a call you have {me.status}")
            now = now_iso()
            me.status, me.joined_at = "answered", now
            if call.status == "ringing":
                call.status, call.started_at = "ongoing", now

        return await self._transition(call_id, identity.user.id, answer)

    async def reject(self, identity: Identity, call_id: str) -> Call:
        def reject(call: Call, me: CallParticipant) -> None:
            if me.status != "invited":
                raise CallFailed(f"You cannot reject a call you have {me.status}")
            me.status = "rejected"

        return await self._transition(call_id, identity.user.id, reject)

    async def end(self, identity: Identity, call_id: str) -> Call:
        """Leave the call; the caller hanging up a call nobody answered cancels it."""

        def end(call: Call, me: CallParticipant) -> None:
            if me.status not in IN_CALL:
                raise CallFailed("You are no longer in this call")
            self._leave(call, me)

        return await self._transition(call_id, identity.user.id, end)

    @staticmethod
    def _leave(call: Call, participant: CallParticipant) -> None:
        if participant.status == "invited":
            participant.status = "rejected"
        else:
            participant.status, participant.left_at = "left", now_iso()
        if call.status == "ringing" and participant.user_id == call.initiator_id:
            call.status = "cancelled"

    async def user_gone(self, user_id: str) -> None:
        """A participant whose last socket closed leaves their call (or stops ringing), in any process."""
        call_id = await self.live.call_of(user_id)
        if call_id is None:
            return

        def gone(call: Call, participant: CallParticipant) -> bool:
            if participant.status == "invited":
                participant.status, participant.reason = "missed", "offline"
            elif participant.status == "answered":
                self._leave(call, participant)
            else:  # out of this call already (it changed since the busy mark was read)
                return False
            return True

        try:
            await self._transition(call_id, user_id, gone)
        except NotFound:  # the call ended meanwhile
            return

    async def _ring_out(self, call_id: str) -> None:
        """The ring timeout of a call: invitees still ringing missed it."""
        async with self.live.lock(call_id) as lock:
            entry = await self.live.get(call_id)
            if entry is None:
                return
            ringing = [p for p in entry.call.participants if p.status == "invited"]
            if not ringing:  # everyone answered or refused already: nothing changes, nobody is told
                return
            for participant in ringing:
                participant.status = "missed"
            await self._changed(lock, entry)

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
        call.ended_at = now
        if call.started_at is not None:
            call.duration = round((parse_iso(now) - parse_iso(call.started_at)).total_seconds())

    async def _changed(self, lock: CallLock, entry: LiveCall) -> Call:
        """Settle, write to the registry (freeing whoever is out) and the store, then tell every participant."""
        call = entry.call
        self._settle(call)
        call.updated_at = now_iso()
        await self.live.commit(lock, entry)
        await self.store.save_call(call)
        await self.notifier.to_users(self._audience(entry), Event.CALL_STATUS_UPDATE, await self.view(call))
        return call

    @staticmethod
    def _audience(entry: LiveCall) -> list[str]:
        """Every participant but those who blocked the caller (to them the caller cannot reach them)."""
        return [p.user_id for p in entry.call.participants if p.user_id not in entry.muted]

    # ring timeouts
    async def start_background(self) -> None:
        """Start polling for due ring timeouts (of calls started by any process sharing the registry)."""
        self._closed = False
        self._ensure_ring_loop()

    def _ensure_ring_loop(self) -> None:
        if not self._closed and (self._ring_loop is None or self._ring_loop.done()):
            self._ring_loop = asyncio.ensure_future(self._run_ring_loop())

    async def _run_ring_loop(self) -> None:
        failures = 0
        while not self._closed:  # checked each turn: redis-py on 3.11 can swallow a cancel()
            try:
                due = await self.live.claim_due()
            except Exception as exc:  # the registry is unreachable (Redis down): back off, say so once
                failures += 1
                if failures == 1:
                    log.warning("cannot poll ring timeouts (%s); retrying until it answers", exc)
                await asyncio.sleep(min(self.live.poll_interval * 2 ** min(failures, 8), MAX_POLL_BACKOFF))
                continue
            if failures:
                log.info("polling ring timeouts again")
                failures = 0
            for call_id in due:
                try:
                    await self._ring_out(call_id)
                except Exception:
                    log.exception("ring timeout of call %s failed; trying again", call_id)
                    try:
                        await self.live.schedule(call_id, RETRY_RING)
                    except Exception:
                        log.warning("could not reschedule the ring timeout of call %s", call_id, exc_info=True)
            if not due:
                await asyncio.sleep(self.live.poll_interval)

    # signalling
    async def relay(self, identity: Identity, event: Event, data: dict[str, Any]) -> Relay:
        """Forward an offer, answer or ICE candidate (`event`) to one participant of the same live call."""
        entry = await self.live.get(data["callId"])
        me = entry.call.participant(identity.user.id) if entry is not None else None
        if entry is None or me is None:
            raise NotFound("Call not found or already over")
        target = entry.call.participant(data["to"])
        if me.status not in IN_CALL:
            raise CallFailed("You are no longer in this call")
        if target is None or target.status not in IN_CALL or target.user_id == me.user_id:
            raise CallFailed("That user is not in this call")
        signal = Signal(entry.call.id, me.user_id, target.user_id, data.get("sdp"), data.get("candidate"))
        await self.notifier.to_users([target.user_id], event, signal)
        return Relay(entry.call.id, target.user_id)

    async def close(self) -> None:
        """Stop the ring loop; live calls stay in the registry (another process may time them out)."""
        self._closed = True
        loop, self._ring_loop = self._ring_loop, None
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(loop, timeout=5)
