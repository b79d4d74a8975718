"""How Socket.IO packets are written: orjson for every packet, and no search for binary attachments."""

from __future__ import annotations

import json
from typing import Any

import orjson
import socketio


class OrjsonCodec:
    """The `json` module python-socketio and python-engineio encode packets with."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        """orjson, falling back to the standard parser for what it refuses.

        Python's and some other clients write `NaN` and `Infinity`, which are not
        JSON; orjson rejects them and the whole packet (ack id included) would be
        dropped unanswered. Parsed leniently, the event reaches validation and
        gets its error ack like any other bad payload.
        """
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return json.loads(text)


class JsonPacket(socketio.packet.Packet):
    """Socket.IO packets whose outgoing payloads are JSON only.

    Every emit and ack would otherwise be walked recursively looking for bytes to
    send as binary attachments; WhatsChat's events never carry bytes (files go
    through `POST /uploads`), and the walk cost more than encoding the packet.
    Incoming binary packets are still decoded (and refused by validation).
    """

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        return False
