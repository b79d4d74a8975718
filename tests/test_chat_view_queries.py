"""A page of chats costs the same number of store calls whatever its length.

`ChatService.views` promises "as few queries as the store allows": the members and
unread counts of a whole page come from one store call (`members_and_unread`), not
one or two per chat. Every public store method is counted while the page is built.
"""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any

from models.store.base import Store
from server.keys import STORE
from tests.chat_support import rest_send


def count_store_calls(store: Store, monkeypatch: Any) -> Counter[str]:
    """Counts, by method name, every call made to the store from now on."""
    calls: Counter[str] = Counter()
    for name in dir(Store):
        method = getattr(store, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(method):
            continue

        async def counted(*args: Any, _name: str = name, _method: Any = method, **kwargs: Any) -> Any:
            calls[_name] += 1
            return await _method(*args, **kwargs)

        monkeypatch.setattr(store, name, counted)
    return calls


async def _groups(api: Any, owner: Any, others: list[Any], n: int) -> None:
    for i in range(n):
        status, body = await api.post(
            "/chats", token=owner.token, json={"type": "group", "name": f"g{i}", "participants": [o.id for o in others]}
        )
        assert status == 201, body


async def _page(api: Any, user: Any, store: Store, monkeypatch: Any, path: str = "/chats") -> tuple[int, Counter[str]]:
    calls = count_store_calls(store, monkeypatch)
    status, body = await api.get(path, token=user.token, params={"limit": 50})
    monkeypatch.undo()
    assert status == 200, body
    return len(body["data"]), calls


async def test_a_page_of_chats_costs_the_same_store_calls_for_2_or_8_chats(api, server, make_user, monkeypatch):
    store = server.app[STORE]
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    await _groups(api, alice, [bob, carol], 2)
    status, body = await api.post("/chats", token=alice.token, json={"type": "private", "participants": [bob.id]})
    assert status == 201, body
    await rest_send(api, bob, body["data"]["id"])  # an unread message with a sender to show
    small, few = await _page(api, alice, store, monkeypatch)
    await _groups(api, alice, [bob], 5)
    large, many = await _page(api, alice, store, monkeypatch)
    assert (small, large) == (3, 8)
    assert many == few, f"store calls grew with the page: {dict(few)} for 3 chats, {dict(many)} for 8"
    groups, by_group = await _page(api, alice, store, monkeypatch, "/groups")
    assert groups == 7 and by_group == few
