"""The realtime guarantees over several processes on one Redis, checked against a model (`tests/realtime_model.py`).

Each run here is seeded and bounded (hundreds of operations, a few seconds); `make soak` runs the
same at 10,000 operations over 50 devices and 3 processes. The first test feeds the checker
deliveries that break each rule, so that a clean report means something.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import socketio

from tests.realtime_model import Act, Cluster, Device, Model, Session, Settings, User, check, execute

pytestmark = pytest.mark.redis


def _session(device: Device, authenticated: float, received: list[tuple[tuple[str, ...], float]]) -> Session:
    session = Session(device, len(device.sessions) + 1, 0, "/", socketio.AsyncClient(), authenticated)
    session.received = received
    device.sessions.append(session)
    return session


def _send(model: Model, chat: str, user: str, start: float, ack: float, message: str) -> Act:
    act = Act("send", chat, user, start, ack, True, key=("new", message))
    model.acts.append(act)
    model.by_key[act.key] = act
    model.messages[chat].append(act)
    return act


async def test_the_checker_finds_every_kind_of_problem() -> None:
    model = Model()
    alice, bob, carol = User("a", "alice", ""), User("b", "bob", ""), User("c", "carol", "")
    for user in (alice, bob):
        model.initial.add(("chat", user.id))
    carol_left = Act("remove", "chat", carol.id, 0.5, 0.6, True, target=carol.id)
    model.membership[("chat", carol.id)].append(carol_left)
    model.initial.add(("chat", carol.id))
    x = _send(model, "chat", alice.id, 1.0, 1.1, "x")  # acknowledged before y was issued
    y = _send(model, "chat", alice.id, 2.0, 2.1, "y")
    z = _send(model, "chat", alice.id, 3.0, 3.1, "z")
    _send(model, "chat", alice.id, 4.0, 4.1, "gone")  # what bob's device misses, live or by sync
    edit = Act("edit", "chat", alice.id, 5.0, 5.1, True, target="x", key=("edit", "x", "x2"))
    model.acts.append(edit)
    model.by_key[edit.key] = edit

    bob_phone = Device("bob-phone", bob)
    _session(bob_phone, 0.0, [(y.key, 2.2), (x.key, 2.3), (z.key, 3.2), (z.key, 3.3)])  # order, duplicate
    bob_phone.sessions[-1].ended, bob_phone.sessions[-1].dropped = 3.5, True  # gone: not brought by sync
    bob_laptop = Device("bob-laptop", bob)
    _session(bob_laptop, 0.0, [(edit.key, 5.2), (x.key, 5.3)])  # an edit before its message; y, z missing
    carol_phone = Device("carol-phone", carol)
    _session(carol_phone, 0.0, [(y.key, 2.2)])  # left at 0.6, still hears of y
    run = SimpleNamespace(model=model, devices=[bob_phone, bob_laptop, carol_phone], unexpected=[])
    stored = {"chat": {x.key[1], y.key[1], z.key[1]}}  # `gone` was acknowledged but is not stored

    report = check(run, stored)  # type: ignore[arg-type]
    print(report.text())
    assert report.counts["order"] == 2  # x after y on the phone; x after its own edit on the laptop
    assert report.counts["duplicate"] == 1
    assert report.counts["misdirected"] == 1
    assert report.counts["missing"] == 3  # y, z and gone on the laptop, which stayed connected
    assert report.counts["catch-up gap"] == 1  # gone, for the phone that dropped and never synced it
    assert report.counts["lost"] == 1
    assert not report.clean


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path


async def _run(settings: Settings, folder: Path) -> Any:
    cluster = await asyncio.to_thread(Cluster, settings, folder)
    try:
        await asyncio.to_thread(cluster.start)
        report = await execute(settings, cluster)
    finally:
        await asyncio.to_thread(cluster.stop)
    print(report.text())
    assert report.figures["acknowledged_messages"] > settings.operations // 4, report.text()
    assert report.clean, f"{report.text()}\n{cluster.logs()}"
    return report


SMALL = {"operations": 700, "devices": 12, "users": 8, "workers": 6, "seconds": 60.0}


@pytest.mark.parametrize("processes", [2, 3])
async def test_every_socket_gets_each_event_once_in_order_and_only_members_do(folder: Path, processes: int) -> None:
    await _run(Settings(seed=random.Random(processes).randrange(10**6), processes=processes, **SMALL), folder)


async def test_the_guarantees_hold_through_a_redis_restart(folder: Path) -> None:
    """Redis stops for a second midway: every process closes its sockets, which reconnect and catch up."""
    report = await _run(Settings(seed=11, processes=3, chaos="redis", **SMALL), folder)
    assert report.figures["chaos"].startswith("redis")
    assert report.figures["dropped_sessions"] > 0  # the sockets were told, not left to miss events


async def test_the_guarantees_hold_when_a_process_is_killed(folder: Path) -> None:
    """One of three processes is SIGKILLed midway: its clients reconnect to the others and catch up."""
    report = await _run(Settings(seed=12, processes=3, chaos="kill", **SMALL), folder)
    assert report.figures["chaos"].startswith("kill")
    assert report.figures["dropped_sessions"] > 0
