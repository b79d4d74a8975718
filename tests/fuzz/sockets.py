"""The Socket.IO half of `make fuzz`: generated payloads and malformed frames.

Payloads come from hypothesis strategies built from each event's marshmallow
schema: per field, a plausible value (real chat, message and user ids, allowed
choices, short text) or a hostile one (wrong types, nulls, `$` operators, huge
strings), in random subsets of the fields, plus arbitrary JSON in place of the
whole payload. Every call must be answered with `{success: true, data}` or
`{success: false, error: {code, message}}` within a few seconds, on a
connection that stays usable.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import socketio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as fixed_seed
from hypothesis import strategies as st
from marshmallow import Schema, fields, validate

from handlers.sio.namespaces import namespace_classes

CODES = {"AUTH_001", "AUTH_002", "AUTH_004", "MSG_001", "MSG_002", "CALL_001", "CALL_002", "VAL_001", "RES_001",
         "RES_002", "RATE_001", "FILE_001"}  # fmt: skip
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.just({"$ne": None}),
    st.just({"$gt": ""}),
    st.lists(st.integers(), max_size=3),
    st.text(max_size=40),
    st.just("x" * 200_000),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
MALFORMED_FRAMES: list[str | bytes] = [
    "",
    "x",
    "4",
    "42",
    "42[",
    '42["send_message"',
    "42{}",
    "42[123]",
    "42[null]",
    '42["send_message",{"chatId":',
    '4299999999999999999999999["sync",{}]',
    "43[]",
    "431[]",
    "44",
    "41",
    "49",
    '42/nowhere,["send_message",{}]',
    "40/nowhere,",
    '451-["send_message",{"_placeholder":true,"num":0}]',
    '42["' + "e" * 10_000 + '"]',
    b"\x00\x01\x02",
    "6",
    "1",
]


@dataclass
class SocketReport:
    cases: int = 0
    answered: int = 0
    frames: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        head = (
            f"socket fuzzer: {self.cases} generated event payloads ({self.answered} answered), "
            f"{self.frames} malformed frames, {'passed' if self.ok else 'FAILED'}"
        )
        return "\n".join([head, *self.failures[:20]])


def _field_strategy(field_: fields.Field, ids: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    choices = [v.choices for v in field_.validators if isinstance(v, validate.OneOf)]
    if choices:
        plausible: st.SearchStrategy[Any] = st.sampled_from(list(choices[0]))
    elif isinstance(field_, fields.List):
        plausible = st.lists(st.sampled_from(ids["user"]), max_size=3)
    elif isinstance(field_, fields.Integer):
        plausible = st.integers(min_value=-5, max_value=2000)
    elif isinstance(field_, fields.Boolean):
        plausible = st.booleans()
    elif isinstance(field_, fields.Dict | fields.Raw):
        plausible = st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3) | st.text(max_size=50)
    else:
        plausible = st.sampled_from(ids["any"]) | st.text(max_size=60)
    return st.one_of(plausible, plausible, HOSTILE)


def payloads(schema: type[Schema], ids: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    """Dicts over a random subset of the schema's fields, or arbitrary JSON instead."""
    declared = schema().fields
    shaped = st.fixed_dictionaries(
        {}, optional={name: _field_strategy(f, ids) for name, f in declared.items() if not f.dump_only}
    )
    return st.one_of(shaped, shaped, shaped, JSON)


def examples(strategy: st.SearchStrategy[Any], count: int, seed: int) -> list[Any]:
    """Draw `count` examples with hypothesis, outside any test runner."""
    drawn: list[Any] = []

    @fixed_seed(seed)
    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn[:count]


def _check_answer(report: SocketReport, where: str, payload: Any, answer: Any) -> None:
    if not isinstance(answer, dict) or not isinstance(answer.get("success"), bool):
        report.failures.append(f"{where}: not an answer envelope: {str(answer)[:200]} for {str(payload)[:200]}")
    elif answer["success"] and "data" not in answer:
        report.failures.append(f"{where}: success without data for {str(payload)[:200]}")
    elif not answer["success"] and answer.get("error", {}).get("code") not in CODES:
        report.failures.append(f"{where}: unexpected error {answer.get('error')} for {str(payload)[:200]}")
    else:
        report.answered += 1


async def _setup(url: str, fuzzer: dict[str, Any], friend: dict[str, Any]) -> dict[str, list[str]]:
    """A chat and a message to aim at, so generated ids reach past the lookups."""
    headers = {"Authorization": f"Bearer {fuzzer['token']}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        body = {"type": "private", "participants": [friend["user"]["id"]]}
        async with http.post(f"{url}/api/v1/chats", json=body) as response:
            chat = (await response.json())["data"]["id"]
        async with http.post(f"{url}/api/v1/messages", json={"chatId": chat, "content": "target"}) as response:
            message = (await response.json())["data"]["id"]
    users = [fuzzer["user"]["id"], friend["user"]["id"]]
    return {"user": users, "any": [chat, message, *users, "0123456789abcdef01234567"]}


async def _fuzz_namespace(
    url: str, token: str, namespace: str, events: dict[str, type[Schema]], ids: dict[str, list[str]], count: int,
    seed: int, report: SocketReport,
) -> None:  # fmt: skip
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, namespaces=[namespace], auth={"token": token}, transports=["websocket"], wait_timeout=10)
    try:
        for event, schema in events.items():
            for payload in examples(payloads(schema, ids), count, seed):
                report.cases += 1
                where = f"{namespace} {event}"
                if not client.connected:
                    report.failures.append(f"{where}: the connection dropped")
                    return
                try:
                    answer = await client.call(event, payload, namespace=namespace, timeout=10)
                except socketio.exceptions.TimeoutError:
                    report.failures.append(f"{where}: no answer within 10 s for {str(payload)[:200]}")
                    continue
                _check_answer(report, where, payload, answer)
    finally:
        await client.disconnect()


async def _malformed_frames(url: str, token: str, report: SocketReport) -> None:
    ws_url = url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http:
        for frame in MALFORMED_FRAMES:
            report.frames += 1
            async with http.ws_connect(ws_url, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
                opening = await ws.receive(timeout=5)
                assert opening.type == aiohttp.WSMsgType.TEXT and opening.data.startswith("0"), opening
                await ws.send_str("40" + json.dumps({"token": token}))
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
                await asyncio.sleep(0.05)
    # the server must still serve a well-behaved client after all of that
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    try:
        answer = await client.call("update_status", {"status": "online"}, timeout=10)
        if not (isinstance(answer, dict) and answer.get("success") is True):
            report.failures.append(f"after malformed frames a good call failed: {answer}")
    finally:
        await client.disconnect()


async def fuzz_sockets(url: str, fuzzer: dict[str, Any], friend: dict[str, Any], count: int, seed: int) -> SocketReport:
    report = SocketReport()
    ids = await _setup(url, fuzzer, friend)
    for namespace, cls in namespace_classes().items():
        await _fuzz_namespace(url, fuzzer["token"], namespace, cls.event_schemas, ids, count, seed, report)
    await _malformed_frames(url, fuzzer["token"], report)
    return report
