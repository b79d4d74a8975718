"""The published API documents, generated from the schemas the server validates with.

- OpenAPI 3.1 for REST: the route table plus each handler's `@doc` declaration.
- AsyncAPI 3.0 for Socket.IO: the namespaces as channels, every client event
  with its payload and ack (each namespace's `event_schemas`, `ACK_DATA`), every
  server event with its payload, summary and channels (the event registry,
  `handlers.sio.events`).

Both documents share one set of component schemas converted by apispec's
marshmallow plugin. A route or an event without a schema is an error here, so a
new endpoint cannot ship undocumented.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema

from handlers.rest.apidoc import Doc, declared
from handlers.sio.events import EVENTS
from handlers.sio.namespaces import NAMESPACES, ROOT, namespace_classes
from schemas.auth import Authenticate
from schemas.common import PaginationOut
from schemas.events import ACK_DATA, ErrorOut
from schemas.responses import ErrorEnvelope

API_PREFIX = "/api/v1"
VERSION = "1.0.0"
TITLE = "WhatsChat"
DESCRIPTION = "A Socket.IO-first realtime chat service. See docs/protocol.md for the rules behind each operation."
CHANNELS = {ROOT: "root", "/messages": "messages", "/calls": "calls", "/status": "status"}


class UndocumentedError(RuntimeError):
    """A route or event has no schema: the documents refuse to be built."""


def _spec() -> tuple[APISpec, MarshmallowPlugin]:
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title=TITLE, version=VERSION, openapi_version="3.1.0", plugins=[plugin], info={"description": DESCRIPTION}
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    return spec, plugin


def _ref(plugin: MarshmallowPlugin, schema: type[Schema]) -> dict[str, Any]:
    """A `$ref` to the schema's component (registering it on first use)."""
    return plugin.converter.resolve_nested_schema(schema)  # type: ignore[union-attr]


def _success(plugin: MarshmallowPlugin, decl: Doc) -> dict[str, Any]:
    properties: dict[str, Any] = {"success": {"const": True}, "message": {"type": "string"}}
    if decl.shape == "list" and decl.data is not None:
        properties["data"] = {"type": "array", "items": _ref(plugin, decl.data)}
        properties["pagination"] = _ref(plugin, PaginationOut)
    elif decl.data is not None:
        properties["data"] = _ref(plugin, decl.data)
    return {"type": "object", "required": ["success"], "properties": properties}


def _operation(plugin: MarshmallowPlugin, path: str, decl: Doc) -> dict[str, Any]:
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
    if decl.shape == "file":
        ok = {"description": "The file's bytes", "content": {"*/*": {"schema": {}}}}
    else:
        ok = {"description": decl.summary, "content": {"application/json": {"schema": _success(plugin, decl)}}}
    op["responses"] = {
        **{str(status): ok for status in (decl.status, *decl.also)},
        "default": {"description": "An error", "content": {"application/json": {"schema": ErrorEnvelope}}},
    }
    if decl.auth:
        op["security"] = [{"bearer": []}]
    return op


def build_openapi(app: web.Application) -> dict[str, Any]:
    spec, plugin = _spec()
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("formatter") or info.get("path")
        if not path or not path.startswith(API_PREFIX) or route.method == "HEAD":
            continue
        decl = declared(route.handler)
        if decl is None:
            raise UndocumentedError(f"{route.method} {path} has no @doc declaration")
        operation = _operation(plugin, path, decl)
        operation["operationId"] = route.method.lower() + re.sub(r"\W+", "_", path[len(API_PREFIX) :]).rstrip("_")
        paths.setdefault(path[len(API_PREFIX) :] or "/", {})[route.method.lower()] = operation
    for path, operations in sorted(paths.items()):
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    document["servers"] = [{"url": API_PREFIX}]
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
        channels[channel] = {"address": ns, "messages": channel_messages}
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
    components = spec.to_dict().get("components", {})
    return {
        "asyncapi": "3.0.0",
        "info": {"title": f"{TITLE} Socket.IO", "version": VERSION, "description": DESCRIPTION},
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "localhost:3001", "protocol": "ws", "pathname": "/socket.io/"}},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": components.get("schemas", {}), "messages": messages},
    }
