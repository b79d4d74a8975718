"""Call events (`/calls` and `/`): thin handlers over `CallService`.

`start_call` acks with the call; `incoming_call` and `call_status_update` are
pushed by the service. The three WebRTC events are relayed to the participant
named in `to`, with `from` added, and only within a live call.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema

from handlers.sio.base import BaseNamespace
from models.auth import Identity
from models.documents import Call
from models.events import Event
from schemas import calls as s
from schemas.events import Relayed

_call_out, _relayed = s.CallOut(), Relayed()


class CallEvents(BaseNamespace):
    event_schemas: dict[str, type[Schema]] = {
        "start_call": s.StartCall,
        "answer_call": s.CallRef,
        "reject_call": s.CallRef,
        "end_call": s.CallRef,
        "webrtc_offer": s.Offer,
        "webrtc_answer": s.Offer,
        "webrtc_ice_candidate": s.IceCandidate,
    }

    async def _answer(self, call: Call) -> Any:
        """The call as the wire shows it: its view (the participants' names) dumped with `CallOut`."""
        return _call_out.dump(await self.services.calls.view(call))

    async def on_start_call(self, sid: str, identity: Identity, data: dict[str, Any]) -> Any:
        return await self._answer(await self.services.calls.start(identity, data))

    async def on_answer_call(self, sid: str, identity: Identity, data: dict[str, Any]) -> Any:
        return await self._answer(await self.services.calls.answer(identity, data["callId"]))

    async def on_reject_call(self, sid: str, identity: Identity, data: dict[str, Any]) -> Any:
        return await self._answer(await self.services.calls.reject(identity, data["callId"]))

    async def on_end_call(self, sid: str, identity: Identity, data: dict[str, Any]) -> Any:
        return await self._answer(await self.services.calls.end(identity, data["callId"]))

    async def on_webrtc_offer(self, sid: str, identity: Identity, data: dict[str, Any]) -> Any:
        return _relayed.dump(await self.services.calls.relay(identity, Event.WEBRTC_OFFER, data))

    async def on_webrtc_answer(self, sid: str, identity: Identity, data: dict[str, Any]) -> Any:
        return _relayed.dump(await self.services.calls.relay(identity, Event.WEBRTC_ANSWER, data))

    async def on_webrtc_ice_candidate(self, sid: str, identity: Identity, data: dict[str, Any]) -> Any:
        return _relayed.dump(await self.services.calls.relay(identity, Event.WEBRTC_ICE_CANDIDATE, data))
