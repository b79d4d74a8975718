"""What the transport takes from python-socketio and python-engineio internals, still there as it expects.

`handlers/sio/` overrides, calls and copies private names that no upstream release
promises to keep. The lock pins the versions this suite ran with; after an upgrade
(`make lock LOCK_ARGS='--upgrade-package python-socketio'`) this module is the one that fails,
naming what changed. docs/transport.md says what each name is for and what to compare.

- `METHODS`: every upstream method overridden or called, with the parameters relied on.
- `ATTRIBUTES`: the attributes of upstream objects read or written.
- the hook tests: upstream still calls the overrides where they must take effect.
- `COPIED`: upstream functions whose logic the transport repeats; a digest of each one's source
  fails on any change, so a new check or fix upstream is ported rather than missed.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import textwrap
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import engineio
import pytest
import socketio
from engineio import async_socket, exceptions, packet
from engineio.async_drivers import aiohttp as aiohttp_driver
from socketio import async_manager, async_pubsub_manager, async_redis_manager, base_manager
from socketio import packet as sio_packet

from handlers.sio.fanout import DirectFanoutManager
from handlers.sio.managers import LocalManager, SharedManager
from handlers.sio.notifier import RedisManager
from handlers.sio.rooms import CompactRooms
from handlers.sio.server import SocketServer
from handlers.sio.transport import EngineServer, EngineSocket, PacketQueue, translate_request

AsyncSocket = async_socket.AsyncSocket
PubSub = async_pubsub_manager.AsyncPubSubManager

# (owner, method, parameters, who relies on it). A list: the parameters exactly, in order (an override
# mirrors them, or a call passes them by position); a set: parameters a call passes by keyword.
METHODS: list[tuple[Any, str, list[str] | set[str], str]] = [
    # python-socketio's server
    (socketio.AsyncServer, "_engineio_server_class", ["self"], "SocketServer returns EngineServer"),
    (socketio.AsyncServer, "_send_eio_packet", ["self", "eio_sid", "eio_pkt"], "SocketServer bounds each queue"),
    (socketio.AsyncServer, "_send_packet", ["self", "eio_sid", "pkt"], "SocketServer bounds acks"),
    (socketio.AsyncServer, "_handle_eio_connect", ["self", "eio_sid", "environ"], "SocketServer may refuse"),
    (socketio.AsyncServer, "_handle_eio_disconnect", ["self", "eio_sid", "reason"], "SocketServer ends a poll"),
    (socketio.AsyncServer, "_handle_eio_message", ["self", "eio_sid", "data"], "SocketServer drops bad packets"),
    (
        socketio.AsyncServer,
        "_handle_event_internal",
        ["self", "server", "sid", "eio_sid", "data", "namespace", "id"],
        "SocketServer tells handlers whether an ack was asked",
    ),
    (socketio.AsyncServer, "emit", {"to", "room", "skip_sid", "namespace", "ignore_queue"}, "SocketNotifier"),
    (socketio.AsyncServer, "disconnect", {"sid", "namespace", "ignore_queue"}, "SocketNotifier"),
    (socketio.AsyncNamespace, "trigger_event", ["self", "event", "*args"], "BaseNamespace answers every event"),
    # python-socketio's managers
    (
        socketio.AsyncManager,
        "emit",
        ["self", "event", "data", "namespace", "room", "skip_sid", "callback", "to", "**kwargs"],
        "DirectFanoutManager.emit",
    ),
    (
        base_manager.BaseManager,
        "basic_enter_room",
        ["self", "sid", "namespace", "room", "eio_sid"],
        "CompactRooms",
    ),
    (base_manager.BaseManager, "get_participants", ["self", "namespace", "room"], "CompactRooms, notifier"),
    (base_manager.BaseManager, "is_sid_room", ["self", "namespace", "room"], "CompactRooms.basic_enter_room"),
    (base_manager.BaseManager, "is_connected", ["self", "sid", "namespace"], "RedisManager._local, BaseNamespace"),
    (base_manager.BaseManager, "is_pre_connected", ["self", "sid", "namespace"], "RedisManager._local"),
    (base_manager.BaseManager, "initialize", ["self"], "RedisManager.start"),
    (PubSub, "emit", {"event", "data", "namespace", "room", "**kwargs"}, "RedisManager.emit"),
    (PubSub, "_publish", ["self", "data"], "RedisManager._publish"),
    (PubSub, "_listen", ["self"], "RedisManager._listen"),
    (PubSub, "_handle_emit", ["self", "message"], "remote emits reach DirectFanoutManager.emit through it"),
    (PubSub, "_thread", ["self"], "consumes RedisManager._listen"),
    (socketio.AsyncRedisManager, "__init__", {"url", "channel", "redis_options"}, "RedisManager.__init__"),
    (sio_packet.Packet, "data_is_binary", ["cls", "data"], "JsonPacket"),
    # python-engineio's server
    (engineio.AsyncServer, "handle_request", ["self", "*args", "**kwargs"], "EngineServer.handle_request"),
    (engineio.AsyncServer, "create_queue", ["self", "*args", "**kwargs"], "EngineServer.create_queue"),
    (engineio.AsyncServer, "_trigger_event", ["self", "event", "*args", "**kwargs"], "EngineServer._trigger_event"),
    (engineio.AsyncServer, "_make_response", ["self", "response_dict", "environ"], "EngineServer.handle_request"),
    (engineio.AsyncServer, "_unauthorized", ["self", "message"], "EngineServer.handle_request"),
    (engineio.AsyncServer, "_upgrades", ["self", "sid", "transport"], "EngineServer.handle_request"),
    (engineio.AsyncServer, "_cors_allowed_origins", ["self", "environ"], "EngineServer._opens_websocket"),
    (engineio.AsyncServer, "_service_task", ["self"], "EngineServer.handle_request"),
    (engineio.AsyncServer, "generate_id", ["self"], "EngineServer.handle_request"),
    (
        engineio.AsyncServer,
        "start_background_task",
        ["self", "target", "*args", "**kwargs"],
        "EngineServer (remembers event handlers for close_all)",
    ),
    (engineio.AsyncServer, "shutdown", ["self"], "EngineServer.close_all"),
    # python-engineio's socket
    (AsyncSocket, "__init__", ["self", "server", "sid"], "EngineServer builds EngineSocket(server, sid)"),
    (AsyncSocket, "schedule_ping", ["self"], "EngineSocket.schedule_ping"),
    (AsyncSocket, "close", ["self", "wait", "abort", "reason"], "EngineSocket.close"),
    (AsyncSocket, "_upgrade_websocket", ["self", "environ"], "EngineSocket._upgrade_websocket"),
    (AsyncSocket, "receive", ["self", "pkt"], "EngineSocket._upgrade_websocket"),
    (AsyncSocket, "send", ["self", "pkt"], "EngineServer.handle_request"),
    (AsyncSocket, "handle_get_request", ["self", "environ"], "long-polling upgrades reach _upgrade_websocket"),
    (packet.Packet, "__init__", ["self", "packet_type", "data", "encoded_packet"], "transport, fanout"),
    (aiohttp_driver, "translate_request", ["request"], "transport.Environ answers the same"),
]


def _label(owner: Any) -> str:
    return f"{owner.__module__}.{owner.__qualname__}" if isinstance(owner, type) else owner.__name__


def _parameters(function: Any) -> list[str]:
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return [stars.get(p.kind, "") + p.name for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize(
    ("owner", "name", "expected", "user"), METHODS, ids=[f"{_label(o)}.{n}" for o, n, _, _ in METHODS]
)
def test_method(owner: Any, name: str, expected: list[str] | set[str], user: str) -> None:
    where = f"{_label(owner)}.{name}"
    function = inspect.getattr_static(owner, name, None)
    if function is None:
        pytest.fail(f"{where} is gone upstream; {user} relies on it (see docs/transport.md)")
    actual = _parameters(getattr(function, "__func__", function))  # a classmethod's function, so that `cls` counts
    if isinstance(expected, list):
        assert actual == expected, f"{where} now takes ({', '.join(actual)}), not ({', '.join(expected)}); {user}"
    else:
        missing = sorted(expected - set(actual))
        assert not missing, f"{where} no longer takes {', '.join(missing)}: ({', '.join(actual)}); {user}"


# objects built as the app builds them (no event loop, no network: nothing here connects)


def _server() -> SocketServer:
    return SocketServer(client_manager=LocalManager(), async_mode="aiohttp", logger=False, engineio_logger=False)


def _socket() -> AsyncSocket:
    return AsyncSocket(_server().eio, "sid")


def _shared() -> SharedManager:
    manager = SharedManager("redis://127.0.0.1:9/0")
    manager.set_server(_server())
    return manager


BUILDERS: dict[str, Callable[[], Any]] = {
    "socketio.AsyncServer": _server,
    "engineio.AsyncServer": lambda: _server().eio,
    "engineio.AsyncSocket": _socket,
    "socketio.AsyncRedisManager": _shared,
}
ATTRIBUTES = {
    "socketio.AsyncServer": ("eio", "environ", "manager", "manager_initialized", "packet_class", "namespace_handlers"),
    "engineio.AsyncServer": (
        "sockets",
        "ping_interval",
        "ping_timeout",
        "ping_interval_grace_period",
        "max_http_buffer_size",
        "transports",
        "cors_allowed_origins",
        "start_service_task",
        "service_task_handle",
        "async_mode",
        "async_handlers",
        "logger",
        "reason.PING_TIMEOUT",
        "reason.CLIENT_DISCONNECT",
        "reason.TRANSPORT_CLOSE",
        "reason.SERVER_DISCONNECT",
    ),
    "engineio.AsyncSocket": (
        "server",
        "sid",
        "queue",
        "last_ping",
        "connected",
        "upgrading",
        "upgraded",
        "closing",
        "closed",
    ),
    "socketio.AsyncRedisManager": ("rooms", "server", "redis_url", "redis_options", "channel", "host_id", "json"),
}
ATTRIBUTE_CASES = [(kind, name) for kind, names in ATTRIBUTES.items() for name in names]


@pytest.mark.parametrize(("kind", "dotted"), ATTRIBUTE_CASES, ids=[f"{k}().{n}" for k, n in ATTRIBUTE_CASES])
def test_attribute(kind: str, dotted: str) -> None:
    value = BUILDERS[kind]()
    for part in dotted.split("."):
        assert hasattr(value, part), f"{kind}() has no `{dotted}` any more (see docs/transport.md)"
        value = getattr(value, part)


MODULE_NAMES = {
    async_socket: ("AsyncSocket",),
    packet: ("OPEN", "CLOSE", "PING", "PONG", "MESSAGE", "UPGRADE", "NOOP"),
    exceptions: ("UnknownPacketError", "SocketIsClosedError"),
    sio_packet: ("EVENT", "Packet"),
}


def test_module_names() -> None:
    """Constants, exceptions and classes the transport imports."""
    wanted = [(module, name) for module, names in MODULE_NAMES.items() for name in names]
    missing = [f"{module.__name__}.{name}" for module, name in wanted if not hasattr(module, name)]
    assert not missing, f"gone upstream: {', '.join(missing)} (see docs/transport.md)"
    assert "translate_request" in aiohttp_driver._async, "the aiohttp driver's _async has no translate_request"


# the hooks: upstream still calls the overrides where they must take effect


def test_socketio_builds_our_engineio_server_and_sends_it_its_events() -> None:
    sio = _server()
    assert type(sio.eio) is EngineServer, "socketio.AsyncServer no longer builds eio via _engineio_server_class()"
    for event in ("connect", "message", "disconnect"):
        handler = sio.eio.handlers.get(event)
        ours = getattr(SocketServer, f"_handle_eio_{event}")
        assert getattr(handler, "__func__", None) is ours, (
            f"Engine.IO's {event!r} no longer reaches _handle_eio_{event}"
        )
    assert sio.eio._async["translate_request"] is translate_request, "EngineServer could not replace translate_request"


def test_engineio_builds_each_queue_with_create_queue_and_no_arguments() -> None:
    assert type(EngineSocket(_server().eio, "sid").queue) is PacketQueue, "AsyncSocket's queue skips create_queue()"


def test_upstream_paths_still_pass_through_the_overrides() -> None:
    """What each override is for, checked in the upstream code that must call it."""
    calls = [
        (AsyncSocket.handle_get_request, "'_upgrade_' + transport", "a polling socket upgrades via _upgrade_*"),
        (AsyncSocket.receive, "self.schedule_ping()", "a PONG schedules the next ping via schedule_ping()"),
        (async_manager.AsyncManager.emit, "self.server._send_eio_packet(", "broadcasts pass _send_eio_packet"),
        (async_manager.AsyncManager.emit, "self.server._send_packet(", "emits with callbacks pass _send_packet"),
        (socketio.AsyncServer._handle_event_internal, "server._send_packet(", "acks pass _send_packet"),
        (PubSub.emit, "kwargs.get('ignore_queue')", "AsyncPubSubManager.emit keeps ignore_queue emits local"),
        (PubSub._thread, "self._listen()", "the pub/sub listener reads _listen()"),
        (PubSub._thread, "isinstance(message, dict)", "_listen() may yield parsed dicts"),
        (PubSub._handle_emit, "super().emit(", "remote emits go on to the next manager's emit"),
    ]
    for function, text, why in calls:
        assert text in inspect.getsource(function), f"{function.__qualname__} no longer has {text!r}: {why}"


def test_the_pubsub_listener_is_kept_as_thread() -> None:
    manager = SharedManager("redis://127.0.0.1:9/0")
    manager.server = SimpleNamespace(start_background_task=lambda target: ("task", target), logger=logging.getLogger())
    manager.initialize()
    assert getattr(manager, "thread", None) == ("task", manager._thread), "RedisManager.stop cancels `thread`"


def test_the_managers_combine_as_designed() -> None:
    """Remote emits (AsyncPubSubManager._handle_emit) reach DirectFanoutManager before AsyncManager."""
    order = [CompactRooms, RedisManager, socketio.AsyncRedisManager, PubSub, DirectFanoutManager, socketio.AsyncManager]
    mro = SharedManager.__mro__
    assert all(cls in mro for cls in order) and sorted(order, key=mro.index) == order, mro
    assert LocalManager.__mro__[1:3] == (CompactRooms, DirectFanoutManager)


# copied logic: a change upstream means comparing it with the copy, then updating the digest here

COPIED: list[tuple[Any, str, str]] = [
    (engineio.AsyncServer.handle_request, "911b69db6dcb", "EngineServer._opens_websocket repeats its checks"),
    (engineio.AsyncServer._handle_connect, "57f46d815462", "EngineServer.handle_request opens WebSockets as it does"),
    (AsyncSocket._upgrade_websocket, "87601500a120", "EngineSocket._upgrade_websocket replaces it"),
    (AsyncSocket._websocket_handler, "3548a4051e6f", "EngineSocket._upgrade_websocket and WebSocket repeat it"),
    (AsyncSocket.schedule_ping, "ce99733916e9", "EngineSocket.schedule_ping: the Heartbeat instead of a task"),
    (AsyncSocket._send_ping, "af7d301862db", "EngineSocket.beat"),
    (AsyncSocket.check_ping_timeout, "b752d61daa26", "Heartbeat._expire, SocketServer.deliver_nowait"),
    (AsyncSocket.send, "e7de91d345df", "SocketServer.deliver_nowait"),
    (aiohttp_driver.translate_request, "20aa78274006", "transport.Environ"),
    (async_manager.AsyncManager.emit, "974bad6cde33", "DirectFanoutManager.emit"),
    (base_manager.BaseManager.basic_enter_room, "4bccfc8039a4", "CompactRooms.basic_enter_room"),
    (base_manager.BaseManager.get_participants, "6dbb771adb36", "CompactRooms.get_participants"),
    (async_redis_manager.AsyncRedisManager._publish, "4e3cae38ca63", "RedisManager._publish replaces it"),
    (async_redis_manager.AsyncRedisManager._listen, "0e0da0c7983a", "RedisManager._listen replaces it"),
]


def digest(function: Any) -> str:
    return hashlib.sha256(textwrap.dedent(inspect.getsource(function)).encode()).hexdigest()[:12]


@pytest.mark.parametrize(
    ("function", "expected", "copy"), COPIED, ids=[f"{f.__module__}.{f.__qualname__}" for f, _, _ in COPIED]
)
def test_copied_upstream_code_is_unchanged(function: Any, expected: str, copy: str) -> None:
    actual = digest(function)
    where = f"{inspect.getsourcefile(function)}:{inspect.getsourcelines(function)[1]}"
    assert actual == expected, (
        f"{function.__module__}.{function.__qualname__} changed upstream ({where}); {copy}: compare the two, "
        f"port what matters, then set its digest in COPIED to {actual!r}"
    )


def test_events_run_in_the_tasks_close_all_waits_for() -> None:
    """`EngineServer.close_all` waits, at shutdown, for the tasks started with a target of these names."""
    from handlers.sio.transport import _EVENT_HANDLERS

    trigger = inspect.getsource(engineio.AsyncServer._trigger_event)
    assert "start_background_task(run_async_handler)" in trigger and "def run_sync_handler" in trigger
    assert "self._handle_event_internal" in inspect.getsource(socketio.AsyncServer._handle_event)
    assert {"run_async_handler", "run_sync_handler", "_handle_event_internal"} == _EVENT_HANDLERS
