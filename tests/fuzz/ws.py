"""The `/ws` half of `make fuzz`: generated and malformed frames on the Go Chat Web WebSocket.

Generated frames take a type among the real ones (`CLIENT_FRAMES`, `ping`) and
a few that are not, `data` from the hypothesis strategies of the Socket.IO
fuzzer built over each frame's input schema (plausible ids and choices, wrong
types, nulls, long strings), and a `request_id` that is absent, valid or not.
Malformed frames are the rest of what a client can put on the wire: bad JSON,
JSON that is not an object, binary, deep nesting, long strings and odd unicode,
all under the 64 KiB limit.

Each frame is followed by a `ping` with an id of ours: the server handles a
connection's frames in order and writes its answers in order, so what arrives
before that `pong` is the frame's answer (events pushed meanwhile are told
apart by their type). The checks: a frame with a valid `request_id` gets
exactly one `ack` or `error` with it; a frame the server cannot take (whatever
its schema refuses) gets an `error`; no error is a 5xx; every frame the server
sends matches its AsyncAPI payload; the connection stays open through all of
it, and at the end still answers `ping` and acks a valid `send_message`, while a
frame over 64 KiB closes a connection with 1009.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from hypothesis import strategies as st

from handlers.gochat.ws import CLIENT_FRAMES, MAX_FRAME
from models.errors import ValidationFailed
from schemas.common import load
from tests.api_contract import problems
from tests.fuzz.sockets import JSON, examples, payloads

ERROR_CODES = {400, 401, 403, 404, 409, 413, 422, 429}
ANSWERS = {"ack", "error", "pong"}
FAKE_TYPES = ["", "PING", "Send_Message", "ack", "error", "connected", "new_message", "__proto__", "send_message "]
REQUEST_IDS = st.one_of(
    st.none(),  # no request_id at all
    st.text(min_size=1, max_size=40),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.just(0),
    st.just(""),
    # not a request id: the frame is refused, and the refusal cannot name it
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=2),
    st.just({"id": 1}),
)
UNICODE = "zé 中文 \u202eRTL\u202c 🙂👍🏽 \u0000 \ufeff e\u0301 \U0001f9d1\u200d\U0001f4bb"


def _nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = {"a": leaf}
    return leaf


def malformed_frames(chat: str) -> list[str | bytes]:
    """Frames no schema takes (or that stretch what one takes), each under the 64 KiB limit."""
    huge = "x" * 60_000
    frames: list[str | bytes] = [
        "",
        " ",
        "{",
        '{"type": "ping"',
        "{'type': 'ping'}",
        "[]",
        '["send_message", {"chat_id": "x"}]',
        "42",
        "-1e999",
        "null",
        "true",
        '"send_message"',
        "NaN",
        '{"type": "ping"}{"type": "ping"}',
        '{"type": "send_message", "type": "ping"}',
        "[" * 5_000 + "]" * 5_000,  # deeper than any JSON parser's limit
        json.dumps({"type": "send_message", "data": _nested(200, "x")}),
        json.dumps({"type": "mark_read", "data": [_nested(100, 1)]}),
        json.dumps({"type": "send_message", "request_id": "huge", "data": {"chat_id": chat, "content": huge}}),
        json.dumps({"type": huge}),
        json.dumps({"type": "typing_start", "request_id": huge[:30_000], "data": {"chat_id": huge[:30_000]}}),
        json.dumps({"type": "send_message", "request_id": "u1", "data": {"chat_id": chat, "content": UNICODE}}),
        json.dumps({"type": UNICODE, "request_id": UNICODE}),
        '{"type": "ping", "request_id": "\\ud800"}',  # a lone surrogate
        '{"type": "send_message", "data": {"chat_id": "\\u0000", "content": "\\udfff"}}',
        json.dumps({"type": "user_status", "request_id": 2**64, "data": {"status": "online"}}),
        json.dumps({"type": "send_message", "request_id": 1.5, "data": {"chat_id": chat, "content": "float id"}}),
        json.dumps({"type": "send_message", "data": {"chat_id": {"$ne": None}, "content": {"$gt": ""}}}),
        b"\x00\x01\x02",
        b'{"type": "ping"}',  # the right JSON, as a binary frame
        b"\xff" * 1_000,
    ]
    assert all(len(f if isinstance(f, bytes) else f.encode()) < MAX_FRAME for f in frames)
    return frames


@dataclass
class WsReport:
    cases: int = 0  # generated frames
    frames: int = 0  # malformed frames
    answered: int = 0  # frames with a request_id answered with it
    errors: int = 0  # `error` frames received
    conforming: int = 0  # frames received that matched their AsyncAPI payload
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        head = (
            f"/ws fuzzer: {self.cases} generated frames, {self.frames} malformed frames, {self.answered} answered "
            f"by request_id, {self.errors} error frames, {self.conforming} frames checked against the AsyncAPI "
            f"document, {'passed' if self.ok else 'FAILED'}"
        )
        return "\n".join([head, *self.failures[:20]])


def frame_strategy(ids: dict[str, list[str]]) -> st.SearchStrategy[dict[str, Any]]:
    """A frame object: a real or fake type, `data` as its schema might take it (or not), a request_id or none."""
    real = [
        st.fixed_dictionaries({"type": st.just(name), "data": payloads(spec.schema, ids)})
        for name, spec in CLIENT_FRAMES.items()
    ]
    other = st.fixed_dictionaries(
        {"type": st.sampled_from(FAKE_TYPES) | st.text(max_size=20) | JSON},
        optional={"data": JSON},
    )
    ping = st.fixed_dictionaries({"type": st.just("ping")}, optional={"data": JSON})
    untyped = st.fixed_dictionaries({}, optional={"data": JSON, "kind": st.just("send_message")})

    def with_request_id(frame: dict[str, Any], request_id: Any) -> dict[str, Any]:
        return frame if request_id is None else {**frame, "request_id": request_id}

    frames = st.one_of(*real, *real, other, ping, untyped)
    return st.builds(with_request_id, frames, REQUEST_IDS)


def valid_request_id(request_id: Any) -> bool:
    return isinstance(request_id, str | int) and not isinstance(request_id, bool)


def expected_invalid(frame: Any) -> bool:
    """Whether the server must refuse the frame before doing anything (an `error` frame, whatever else)."""
    if not isinstance(frame, dict):
        return True
    if "request_id" in frame and frame["request_id"] is not None and not valid_request_id(frame["request_id"]):
        return True
    kind = frame.get("type")
    if kind == "ping":
        return False
    spec = CLIENT_FRAMES.get(kind) if isinstance(kind, str) else None
    if spec is None:
        return True
    data = frame.get("data", {})
    try:
        load(spec.schema(), data if data is not None else {})
    except ValidationFailed:
        return True
    return False


class Probe:
    """One `/ws` connection: send a frame, then collect what it answers up to our own `pong`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, report: WsReport) -> None:
        self.ws = ws
        self.report = report
        self.barriers = 0

    def check(self, frame: dict[str, Any], where: str) -> None:
        kind = frame.get("type")
        found = problems(f"/components/messages/ws_{kind}/payload", frame) if isinstance(kind, str) else ["no type"]
        if found:
            self.report.failures.append(f"{where}: a {kind} frame breaks the document: {found[:3]} {str(frame)[:200]}")
        else:
            self.report.conforming += 1
        if kind == "error":
            self.report.errors += 1
            code = (frame.get("data") or {}).get("code")
            if code not in ERROR_CODES:
                self.report.failures.append(f"{where}: error code {code}: {str(frame)[:300]}")

    async def exchange(self, raw: str | bytes, where: str, timeout: float = 10) -> list[dict[str, Any]] | None:
        """Send `raw`, then a ping; the frames before its pong (None: the connection closed)."""
        self.barriers += 1
        barrier = f"__barrier-{self.barriers}"
        try:
            if isinstance(raw, bytes):
                await self.ws.send_bytes(raw)
            else:
                await self.ws.send_str(raw)
            await self.ws.send_str(json.dumps({"type": "ping", "request_id": barrier}))
        except ConnectionError:
            self.report.failures.append(f"{where}: the connection was gone before sending {str(raw)[:200]}")
            return None
        answers: list[dict[str, Any]] = []
        while True:
            try:
                msg = await self.ws.receive(timeout=timeout)
            except TimeoutError:
                self.report.failures.append(f"{where}: no pong within {timeout} s after {str(raw)[:200]}")
                return None
            if msg.type != aiohttp.WSMsgType.TEXT:
                self.report.failures.append(f"{where}: the connection closed ({msg.type}, {msg.data}) on {raw[:200]!r}")
                return None
            frame = orjson.loads(msg.data)
            self.check(frame, where)
            if frame.get("type") == "pong" and frame.get("request_id") == barrier:
                return answers
            answers.append(frame)


def judge(report: WsReport, where: str, frame: Any, answers: list[dict[str, Any]]) -> None:
    """What the frame's answers must be, from what the frame is."""
    replies = [a for a in answers if a.get("type") in ANSWERS]
    request_id = frame.get("request_id") if isinstance(frame, dict) else None
    errors = [a for a in replies if a["type"] == "error"]
    if valid_request_id(request_id):
        mine = [a for a in replies if a.get("request_id") == request_id]
        expected = "pong" if frame.get("type") == "ping" else None
        if len(mine) != 1 or (expected and mine[0]["type"] != expected):
            report.failures.append(f"{where}: {len(mine)} answers with request_id {request_id!r}: {str(frame)[:200]}")
        else:
            report.answered += 1
        if expected_invalid(frame) and not (mine and mine[0]["type"] == "error"):
            report.failures.append(f"{where}: an invalid frame was not refused: {str(frame)[:200]} -> {mine}")
    elif expected_invalid(frame) and not errors:
        report.failures.append(f"{where}: no error frame for {str(frame)[:200]}")
    if any(a.get("type") == "ack" and a.get("request_id") != request_id for a in replies):
        report.failures.append(f"{where}: an ack for another request: {replies} after {str(frame)[:200]}")


async def _connect(http: aiohttp.ClientSession, url: str, token: str) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"{url.replace('http', 'ws', 1)}/ws?token={token}", autoping=True)
    first = await ws.receive(timeout=10)
    assert first.type == aiohttp.WSMsgType.TEXT and orjson.loads(first.data)["type"] == "connected", first
    return ws


async def _setup(http: aiohttp.ClientSession, url: str, token: str, friend: str) -> dict[str, list[str]]:
    """A chat and a message to aim at, so generated ids reach past the lookups."""
    headers = {"Authorization": f"Bearer {token}"}
    async with http.post(f"{url}/api/chats/private", json={"participant_id": friend}, headers=headers) as response:
        chat = (await response.json())["data"]["chat_id"]  # 201, or 409 naming the chat the pair has
    async with http.post(f"{url}/api/chats/{chat}/messages", json={"content": "target"}, headers=headers) as response:
        message = (await response.json())["data"]["message_id"]
    async with http.get(f"{url}/api/users/profile", headers=headers) as response:
        me = (await response.json())["data"]["user_id"]
    return {"user": [me, friend], "chat": [chat], "any": [chat, message, me, friend, "0123456789abcdef01234567"]}


async def fuzz_ws(url: str, token: str, friend: str, count: int, seed: int) -> WsReport:
    """`count` generated frames and every malformed frame on one connection, then the checks that it still works."""
    report = WsReport()
    rng = random.Random(seed)
    async with aiohttp.ClientSession() as http:
        ids = await _setup(http, url, token, friend)
        chat = ids["chat"][0]
        generated = examples(frame_strategy(ids), count, seed)
        ws = await _connect(http, url, token)
        probe = Probe(ws, report)
        raws: list[tuple[str, str | bytes]] = []
        for frame in generated:
            encoded = json.dumps(frame)  # not orjson: the hostile integers go past 64 bits
            if len(encoded.encode()) < MAX_FRAME - 1024:
                raws.append(("generated", encoded))
        raws += [("malformed", raw) for raw in malformed_frames(chat)]
        rng.shuffle(raws)
        for index, (kind, raw) in enumerate(raws):
            where = f"/ws {kind} #{index}"
            if kind == "generated":
                report.cases += 1
            else:
                report.frames += 1
            answers = await probe.exchange(raw, where)
            if answers is None:  # reported; carry on with a new connection
                await ws.close()
                ws = await _connect(http, url, token)
                probe = Probe(ws, report)
                continue
            try:  # the frame as the server reads it (orjson: an integer past 64 bits is a float)
                frame = None if isinstance(raw, bytes) else orjson.loads(raw)
            except orjson.JSONDecodeError:
                frame = None
            if not isinstance(frame, dict):  # binary, not JSON, or not an object
                if not any(a.get("type") == "error" for a in answers):
                    report.failures.append(f"{where}: no error frame for {str(raw)[:200]!r}")
                continue
            judge(report, where, frame, answers)
        await _still_usable(probe, chat, report)
        await ws.close()
        await _oversized(http, url, token, report)
    return report


async def _still_usable(probe: Probe, chat: str, report: WsReport) -> None:
    """After everything: a ping is answered `pong` and a valid message is acked, as stored."""
    answers = await probe.exchange(json.dumps({"type": "ping", "request_id": "last-ping"}), "final ping")
    if answers is None or not any(a.get("type") == "pong" and a.get("request_id") == "last-ping" for a in answers):
        report.failures.append(f"after the fuzzing a ping got no pong: {answers}")
    frame = {"type": "send_message", "request_id": "last-send", "data": {"chat_id": chat, "content": "still here"}}
    answers = await probe.exchange(json.dumps(frame), "final send_message")
    acks = [a for a in answers or [] if a.get("type") == "ack" and a.get("request_id") == "last-send"]
    if not acks or acks[0]["data"].get("content") != "still here":
        report.failures.append(f"after the fuzzing a valid send_message was not acked: {answers}")


async def _oversized(http: aiohttp.ClientSession, url: str, token: str, report: WsReport) -> None:
    """A frame over 64 KiB closes its connection with 1009 (and only that connection)."""
    ws = await _connect(http, url, token)
    report.frames += 1
    frame = json.dumps({"type": "send_message", "data": {"chat_id": "x", "content": "x" * MAX_FRAME}})
    await ws.send_str(frame)
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            break
        if msg.type == aiohttp.WSMsgType.TEXT:
            continue
        break
    if ws.close_code != aiohttp.WSCloseCode.MESSAGE_TOO_BIG:
        report.failures.append(f"a frame over 64 KiB closed with {ws.close_code} ({msg.type}), not 1009")
    await ws.close()
