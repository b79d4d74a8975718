"""`send_message`'s quick loader gives the schema's answers, for every payload.

The schema stays the definition; the quick path may only take payloads the
schema accepts, and must then return exactly what the schema returns. Anything
else must come out of the schema itself, errors included.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import ValidationFailed
from schemas.common import load
from schemas.messages import MESSAGE_TYPES, SendMessage, load_send_message

_SCHEMA = SendMessage()
ids = st.one_of(
    st.text("0123456789abcdef", min_size=24, max_size=24),
    st.text("0123456789abcdefABCDEF\n", min_size=23, max_size=25),
    st.integers(),
    st.none(),
)
texts = st.one_of(st.text(max_size=30), st.just(" \t\n"), st.just(""), st.just("x" * 10_000), st.just("x" * 10_001))
values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), texts, st.lists(st.integers()))
payloads = st.fixed_dictionaries(
    {},
    optional={
        "chatId": ids,
        "content": st.one_of(texts, values),
        "type": st.one_of(st.sampled_from(MESSAGE_TYPES), texts, values),
        "clientId": st.one_of(st.none(), st.text(max_size=3), st.just("c" * 100), st.just("c" * 101), values),
        "metadata": st.one_of(st.none(), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), values),
        "replyTo": st.one_of(st.none(), ids),
        "extra": values,
    },
)


def answer(loader: Any, payload: Any) -> tuple[str, Any]:
    try:
        return "ok", loader(payload)
    except ValidationFailed as exc:
        return "refused", exc.details


@settings(max_examples=3000, deadline=None)
@given(st.one_of(payloads, values))
def test_the_quick_loader_answers_as_the_schema_does(payload: Any) -> None:
    assert answer(load_send_message, payload) == answer(lambda p: load(_SCHEMA, p), payload)


def test_the_common_payload_takes_the_quick_path_and_the_rest_the_schema() -> None:
    common = {"chatId": "a" * 24, "content": "hello", "clientId": "c-1"}
    assert load_send_message(common) == load(_SCHEMA, common)
    assert SendMessage.fast_load is load_send_message  # what the socket handlers use
