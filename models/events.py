"""The names of the events the server pushes, as the domain and the transport refer to them.

Services hand the notifier an `Event` and a view, never a bare string or a wire
dict. What each event carries on the wire and which namespaces carry it is the
event registry's (`handlers.sio.events.EVENTS`), which must list every member
here: a name added to this enum without its entry there stops the server from
importing, so no event can be half-registered.
"""

from __future__ import annotations

from enum import StrEnum


class Event(StrEnum):
    """Every server event; the value is its name on the wire."""

    # the namespace base, to the socket concerned
    AUTHENTICATED = "authenticated"
    UNAUTHORIZED = "unauthorized"
    ERROR = "error"
    # messages
    NEW_MESSAGE = "new_message"
    MESSAGE_EDITED = "message_edited"
    MESSAGE_DELETED = "message_deleted"
    MESSAGE_STATUS = "message_status"
    TYPING_START = "typing_start"
    TYPING_STOP = "typing_stop"
    # chats
    CHAT_CREATED = "chat_created"
    CHAT_UPDATED = "chat_updated"
    CHAT_DELETED = "chat_deleted"
    PARTICIPANT_ADDED = "participant_added"
    PARTICIPANT_REMOVED = "participant_removed"
    # calls
    INCOMING_CALL = "incoming_call"
    CALL_STATUS_UPDATE = "call_status_update"
    WEBRTC_OFFER = "webrtc_offer"
    WEBRTC_ANSWER = "webrtc_answer"
    WEBRTC_ICE_CANDIDATE = "webrtc_ice_candidate"
    # presence
    USER_STATUS_CHANGED = "user_status_changed"
