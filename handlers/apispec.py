"""The published API documents, generated from the schemas the server validates with.

- OpenAPI 3.1 for REST, one document per door: the route table plus each
  handler's `@doc` declaration, wrapped in that door's envelopes (`Door`):
  `/api/v1` (WhatsChat's own) and `/api` (the Go Chat Web door).
- AsyncAPI 3.0 for the realtime side: the Socket.IO namespaces as channels, every
  client event with its payload and ack (each namespace's `event_schemas`,
  `ACK_DATA`), every server event with its payload, summary and channels (the
  event registry, `handlers.sio.events`); and the plain WebSocket `/ws` as one
  more channel, its client frames (`CLIENT_FRAMES`) and server frames (`FRAMES`)
  each as the frame envelope `{type, data, request_id?}`.

The documents share one way of converting marshmallow schemas (apispec's
plugin); the Go Chat Web door's schemas are named with a `Go` prefix, so the two
doors' `MessageOut` or `Typing` never collide in the one AsyncAPI document. A
route, an event or a frame without a schema is an error here, so a new endpoint
cannot ship undocumented.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin, resolver
from marshmallow import Schema, fields

from handlers.gochat.common import API as GO_API
from handlers.gochat.common import WS, is_door_path
from handlers.gochat.frames import FRAMES, Connected, ErrorData
from handlers.gochat.ws import CLIENT_FRAMES
from handlers.rest.apidoc import Doc, declared
from handlers.sio.events import EVENTS
from handlers.sio.namespaces import NAMESPACES, ROOT, namespace_classes
from schemas.auth import Authenticate
from schemas.common import PaginationOut
from schemas.events import ACK_DATA, ErrorOut
from schemas.gochat import UnixTime
from schemas.responses import ErrorEnvelope

API_PREFIX = "/api/v1"
VERSION = "1.0.0"
TITLE = "WhatsChat"
DESCRIPTION = "A Socket.IO-first realtime chat service. See docs/protocol.md for the rules behind each operation."
GO_DESCRIPTION = (
    "The Go Chat Web door: REST under /api and a plain WebSocket at /ws, over the same users, chats and messages "
    "as /api/v1 and Socket.IO. Answers are {code, message, data, timestamp}; errors carry data: {error, details}."
)
CHANNELS = {ROOT: "root", "/messages": "messages", "/calls": "calls", "/status": "status"}
WS_CHANNEL = "ws"
GO_MODULES = ("schemas.gochat", "handlers.gochat.")


class UndocumentedError(RuntimeError):
    """A route or event has no schema: the documents refuse to be built."""


def _name(schema: type[Schema] | Schema) -> str:
    """Component names: the Go Chat Web door's schemas get `Go` before theirs, as both doors have a `MessageOut`."""
    cls = schema if isinstance(schema, type) else type(schema)
    name = resolver(cls)
    return f"Go{name}" if cls.__module__.startswith(GO_MODULES) else name


def _spec(title: str = TITLE, description: str = DESCRIPTION) -> tuple[APISpec, MarshmallowPlugin]:
    plugin = MarshmallowPlugin(schema_name_resolver=_name)
    spec = APISpec(
        title=title, version=VERSION, openapi_version="3.1.0", plugins=[plugin], info={"description": description}
    )
    plugin.map_to_openapi_type(UnixTime, fields.Integer)  # the Go Chat Web door's times: Unix seconds
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    return spec, plugin


def _ref(plugin: MarshmallowPlugin, schema: type[Schema]) -> dict[str, Any]:
    """A `$ref` to the schema's component (registering it on first use)."""
    return plugin.converter.resolve_nested_schema(schema)  # type: ignore[union-attr]


def _success(plugin: MarshmallowPlugin, decl: Doc, status: int) -> dict[str, Any]:
    """`/api/v1`: `{success, message, data}`, a list with `pagination` beside it."""
    properties: dict[str, Any] = {"success": {"const": True}, "message": {"type": "string"}}
    if decl.shape == "list" and decl.data is not None:
        properties["data"] = {"type": "array", "items": _ref(plugin, decl.data)}
        properties["pagination"] = _ref(plugin, PaginationOut)
    elif decl.data is not None:
        properties["data"] = _ref(plugin, decl.data)
    return {"type": "object", "required": ["success"], "properties": properties}


class DoorErrorData(Schema):
    error = fields.String(required=True, metadata={"description": "The snake_case error code"})
    details = fields.Raw(metadata={"description": "422: each field with its messages"})
    chat_id = fields.String(metadata={"description": "409 on a private chat: the chat the pair already has"})


class DoorError(Schema):
    """An error of the Go Chat Web door (`handlers.gochat.common.error_response`)."""

    code = fields.Integer(required=True)
    message = fields.String(required=True)
    data = fields.Nested(DoorErrorData, required=True)
    timestamp = fields.Integer(required=True)


def _go_success(plugin: MarshmallowPlugin, decl: Doc, status: int) -> dict[str, Any]:
    """`/api`: `{code, message, data, timestamp}`, `code` equal to the HTTP status; `data` null when nothing."""
    data: dict[str, Any] = {}
    if decl.shape == "none":
        data = {"type": "null"}
    elif decl.shape == "list" and decl.data is not None:
        data = {"type": "array", "items": _ref(plugin, decl.data)}
    elif decl.data is not None:
        data = _ref(plugin, decl.data)
    return {
        "type": "object",
        "required": ["code", "message", "data", "timestamp"],
        "properties": {
            "code": {"const": status},
            "message": {"type": "string"},
            "data": data,
            "timestamp": {"type": "integer"},
        },
        "additionalProperties": False,
    }


@dataclass(frozen=True, slots=True)
class Door:
    """What tells one REST door's document from another's: where its routes are and how it wraps answers."""

    prefix: str  # the document's server url; paths are written relative to it
    owns: Callable[[str], bool]  # which route paths belong to the door
    success: Callable[[MarshmallowPlugin, Doc, int], dict[str, Any]]  # the success envelope for a status
    error: type[Schema]  # the error envelope (every other status)
    title: str = TITLE
    description: str = DESCRIPTION


WHATSCHAT = Door(API_PREFIX, lambda path: path.startswith(API_PREFIX), _success, ErrorEnvelope)
GOCHAT = Door(
    GO_API,
    lambda path: path != WS and is_door_path(path),
    _go_success,
    DoorError,
    f"{TITLE} Go Chat Web API",
    GO_DESCRIPTION,
)


def _operation(plugin: MarshmallowPlugin, path: str, decl: Doc, door: Door) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": decl.summary, "tags": [decl.tag]}
    params: list[dict[str, Any]] = [
        {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", path)
    ]
    if decl.query is not None:
        params.append({"in": "query", "schema": decl.query})
    if params:
        op["parameters"] = params
    if decl.body is not None:
        op["requestBody"] = {"required": decl.body_required, "content": {"application/json": {"schema": decl.body}}}
    elif decl.shape == "multipart":
        op["requestBody"] = {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "contentMediaType": "application/octet-stream"},
                            "purpose": {"type": "string", "enum": ["avatar", "message", "group"]},
                        },
                    }
                }
            },
        }

    def ok(status: int) -> dict[str, Any]:
        if decl.shape == "file":
            return {"description": "The file's bytes", "content": {"*/*": {"schema": {}}}}
        schema = door.success(plugin, decl, status)
        return {"description": decl.summary, "content": {"application/json": {"schema": schema}}}

    op["responses"] = {
        **{str(status): ok(status) for status in (decl.status, *decl.also)},
        "default": {"description": "An error", "content": {"application/json": {"schema": door.error}}},
    }
    if decl.auth:
        op["security"] = [{"bearer": []}]
    return op


def build_openapi(app: web.Application, door: Door = WHATSCHAT) -> dict[str, Any]:
    """The OpenAPI document of one REST door: every route it owns, each with its `@doc` declaration."""
    spec, plugin = _spec(door.title, door.description)
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("formatter") or info.get("path")
        if not path or not door.owns(path) or route.method == "HEAD":
            continue
        decl = declared(route.handler)
        if decl is None:
            raise UndocumentedError(f"{route.method} {path} has no @doc declaration")
        relative = path[len(door.prefix) :]
        operation = _operation(plugin, path, decl, door)
        operation["operationId"] = route.method.lower() + re.sub(r"\W+", "_", relative).rstrip("_")
        paths.setdefault(relative or "/", {})[route.method.lower()] = operation
    for path, operations in sorted(paths.items()):
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    document["servers"] = [{"url": door.prefix}]
    return document


def _event_payload(plugin: MarshmallowPlugin, schema: type[Schema] | None) -> dict[str, Any]:
    return _ref(plugin, schema) if schema is not None else {}


def _ack(plugin: MarshmallowPlugin, event: str) -> dict[str, Any]:
    data = ACK_DATA.get(event)
    if data is None:
        raise UndocumentedError(f"client event {event!r} has no ack schema")
    return {
        "oneOf": [
            {
                "type": "object",
                "required": ["success", "data"],
                "properties": {"success": {"const": True}, "data": _ref(plugin, data)},
            },
            {
                "type": "object",
                "required": ["success", "error"],
                "properties": {"success": {"const": False}, "error": _ref(plugin, ErrorOut)},
            },
        ]
    }


REQUEST_ID = {"type": ["string", "integer"], "description": "Echoed on the answer (`ack`, `error`, `pong`)"}


def _frame(
    kind: str,
    data: dict[str, Any] | None,
    request_id: Literal["none", "optional", "required"] = "none",
    client: bool = False,
) -> dict[str, Any]:
    """A `/ws` frame: `{type, data, request_id?}`, with or without a `request_id`.

    A client frame's `data` may be left out (it loads as `{}`) and extra keys are
    ignored; a server frame is exactly what is listed.
    """
    properties: dict[str, Any] = {"type": {"const": kind}}
    required = ["type"]
    if data is not None:
        properties["data"] = data
        required += [] if client else ["data"]
    if request_id != "none":
        properties["request_id"] = REQUEST_ID
        required += ["request_id"] if request_id == "required" else []
    payload: dict[str, Any] = {"type": "object", "required": required, "properties": properties}
    return payload if client else payload | {"additionalProperties": False}


def _ws_channel(plugin: MarshmallowPlugin, messages: dict[str, Any], operations: dict[str, Any]) -> dict[str, Any]:
    """The plain WebSocket `/ws`: its frames from `CLIENT_FRAMES` and `FRAMES`, each client frame with its replies."""
    channel = {"$ref": f"#/channels/{WS_CHANNEL}"}
    received: dict[str, tuple[dict[str, Any], str]] = {
        name: (_frame(name, _ref(plugin, spec.schema), "optional", client=True), spec.description)
        for name, spec in CLIENT_FRAMES.items()
    }
    received["ping"] = (_frame("ping", None, "optional", client=True), "Are you there? Answered `pong`.")
    sent: dict[str, tuple[dict[str, Any], str]] = {
        "connected": (_frame("connected", _ref(plugin, Connected)), "The first frame: who you are connected as."),
        **{spec.name: (_frame(spec.name, _ref(plugin, spec.schema)), spec.description) for spec in FRAMES.values()},
    }
    replies: dict[str, tuple[dict[str, Any], str]] = {
        **{
            f"{name}_ack": (
                _frame("ack", _ref(plugin, spec.answer), "required"),
                f"`{name}` with a request_id was done: its result.",
            )
            for name, spec in CLIENT_FRAMES.items()
        },
        # any ack, for a reader that knows only the frame's `type`
        "ack": (
            _frame("ack", {"anyOf": [_ref(plugin, spec.answer) for spec in CLIENT_FRAMES.values()]}, "required"),
            "A frame with a request_id was done: its result (see each frame's own ack).",
        ),
        "error": (
            _frame("error", _ref(plugin, ErrorData), "optional"),
            "A frame failed (with its request_id when it had one): bad JSON, an unknown type, invalid data, a refusal.",
        ),
        "pong": (_frame("pong", None, "optional"), "The answer to `ping`."),
    }
    channel_messages: dict[str, Any] = {}
    for prefix, frames in (("ws_client_", received), ("ws_", sent), ("ws_", replies)):
        for name, (payload, summary) in frames.items():
            key = f"{prefix}{name}"
            title = f"{name} (/ws {'client' if prefix == 'ws_client_' else 'server'})"
            messages[key] = {"name": name, "title": title, "summary": summary, "payload": payload}
            channel_messages[key] = {"$ref": f"#/components/messages/{key}"}
    for name in received:
        answers = ["ws_pong"] if name == "ping" else [f"ws_{name}_ack", "ws_error"]
        operations[f"{WS_CHANNEL}_{name}"] = {
            "action": "receive",
            "channel": channel,
            "messages": [{"$ref": f"#/channels/{WS_CHANNEL}/messages/ws_client_{name}"}],
            "reply": {
                "channel": channel,
                "messages": [{"$ref": f"#/channels/{WS_CHANNEL}/messages/{key}"} for key in answers],
            },
        }
    for name in [*sent, "error"]:  # an `error` also answers a frame that could not be read at all
        operations[f"{WS_CHANNEL}_emit_{name}"] = {
            "action": "send",
            "channel": channel,
            "messages": [{"$ref": f"#/channels/{WS_CHANNEL}/messages/ws_{name}"}],
        }
    return {
        "address": WS,
        "title": "The Go Chat Web WebSocket",
        "description": "Connect with `?token=<access token>` (or `Authorization: Bearer`); every frame is JSON text.",
        "servers": [{"$ref": "#/servers/gochat"}],
        "messages": channel_messages,
        "bindings": {
            "ws": {
                "method": "GET",
                "query": {"type": "object", "properties": {"token": {"type": "string"}}},
                "bindingVersion": "0.1.0",
            }
        },
    }


def build_asyncapi() -> dict[str, Any]:
    spec, plugin = _spec()
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    client_events = {ns: cls.event_schemas for ns, cls in namespace_classes().items()}
    for pushed, entry in EVENTS.items():
        name, payload = pushed.value, _event_payload(plugin, entry.schema)
        messages[name] = {"name": name, "title": name, "summary": entry.description, "payload": payload}
    for events in client_events.values():
        for event, loaded_with in {"authenticate": None, **events}.items():
            key = f"client_{event}"
            if key not in messages:
                payload = _ref(plugin, loaded_with or Authenticate)
                messages[key] = {"name": event, "title": f"{event} (client)", "payload": payload}
                messages[f"{event}_ack"] = {"name": f"{event} ack", "payload": _ack(plugin, event)}
    for ns in NAMESPACES:
        channel = CHANNELS[ns]
        sent = [pushed.value for pushed, entry in EVENTS.items() if ns in entry.namespaces]
        received = ["authenticate", *client_events[ns]]
        channel_messages = {f"client_{e}": {"$ref": f"#/components/messages/client_{e}"} for e in received}
        channel_messages |= {f"{e}_ack": {"$ref": f"#/components/messages/{e}_ack"} for e in received}
        channel_messages |= {e: {"$ref": f"#/components/messages/{e}"} for e in sent}
        channels[channel] = {"address": ns, "servers": [{"$ref": "#/servers/local"}], "messages": channel_messages}
        for event in received:
            operations[f"{channel}_{event}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [{"$ref": f"#/channels/{channel}/messages/client_{event}"}],
                "reply": {
                    "channel": {"$ref": f"#/channels/{channel}"},
                    "messages": [{"$ref": f"#/channels/{channel}/messages/{event}_ack"}],
                },
            }
        for event in sent:
            operations[f"{channel}_emit_{event}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [{"$ref": f"#/channels/{channel}/messages/{event}"}],
            }
    channels[WS_CHANNEL] = _ws_channel(plugin, messages, operations)
    components = spec.to_dict().get("components", {})
    return {
        "asyncapi": "3.0.0",
        "info": {"title": f"{TITLE} Socket.IO and /ws", "version": VERSION, "description": DESCRIPTION},
        "defaultContentType": "application/json",
        "servers": {
            "local": {"host": "localhost:3001", "protocol": "ws", "pathname": "/socket.io/"},
            "gochat": {"host": "localhost:3001", "protocol": "ws", "description": "The Go Chat Web door's WebSocket"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": components.get("schemas", {}), "messages": messages},
    }
