"""The shipped load-test tool against a real server: its counts are the server's counts.

Each run is small (a handful of users, about a second of sending); what is
checked is that what the tool reports agrees with what the server stored and
delivered, and that it notices when a delivery is withheld. Speed is never
asserted here: `make bench` measures it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import aiohttp
import pytest

from server.config import Config
from server.keys import HUB, SIO, STORE
from server.loadtest.cli import add_arguments, clean, summary
from server.loadtest.client import LeanSocket, SocketClosed
from server.loadtest.runner import LoadTest, Options, rss_kib
from server.loadtest.stats import Summary, percentile
from server.loadtest.wsclient import PlainSocket
from tests.conftest import Api, Server

pytestmark = pytest.mark.slow  # many seconds of load: `make check` leaves this module out
QUICK = {"duration": 1.0, "warmup": 0.3, "drain": 3.0, "progress": False}


async def stored_messages(server: Server, chat_ids: list[str]) -> int:
    store = server.app[STORE]
    return sum([await store.count_messages(chat_id) for chat_id in chat_ids])


async def run(server: Server, **options: Any) -> tuple[LoadTest, Any]:
    test = LoadTest(Options(url=server.url, **{**QUICK, **options}))
    return test, await test.run()


async def test_closed_loop_counts_match_the_store(server: Server) -> None:
    test, result = await run(server, users=6, group_size=2)
    assert test.population is not None
    assert result.connected == 6
    assert result.sent > 0 and result.acked == result.sent
    assert result.delivered == result.expected == result.acked  # each message has one other member
    assert result.end_to_end.count == result.delivered and result.ack.count == result.acked
    assert not result.errors, result.errors
    assert clean(result)
    assert await stored_messages(server, test.population.chat_ids) == result.acked_all == result.sent_all


async def test_paced_group_sends_reach_every_other_member(server: Server) -> None:
    test, result = await run(server, users=6, group_size=3, rate=40.0)
    assert test.population is not None
    assert len(test.population.chat_ids) == 2
    assert 0 < result.acked <= 40 * 1.0 + 1
    assert result.expected == 2 * result.acked
    assert result.delivered == result.expected
    assert not result.errors, result.errors
    assert await stored_messages(server, test.population.chat_ids) == result.acked_all
    data = result.as_dict()
    assert data["mode"] == "rate" and data["deliveredPerSecond"] == round(result.delivered / 1.0, 1)


async def test_a_withheld_delivery_is_reported(server: Server) -> None:
    sio = server.app[SIO]
    emit = sio.emit
    withheld: list[Any] = []

    async def withholding_emit(event: str, data: Any = None, *args: Any, **kwargs: Any) -> Any:
        if event == "new_message" and kwargs.get("namespace") == "/messages" and not withheld:
            withheld.append(data)
            return None
        return await emit(event, data, *args, **kwargs)

    sio.emit = withholding_emit  # type: ignore[method-assign]
    _, result = await run(server, users=4, group_size=2, warmup=0.0)
    assert len(withheld) == 1
    assert result.errors == {"missing deliveries": 1}
    assert result.delivered == result.expected - 1
    assert not clean(result)
    assert "missing deliveries 1" in summary(result)


async def test_duplicate_and_foreign_deliveries_are_reported(server: Server) -> None:
    sio = server.app[SIO]
    emit = sio.emit
    state = {"doubled": False}

    async def doubling_emit(event: str, data: Any = None, *args: Any, **kwargs: Any) -> Any:
        await emit(event, data, *args, **kwargs)
        if event == "new_message" and kwargs.get("namespace") == "/messages" and not state["doubled"]:
            state["doubled"] = True
            await emit(event, data, *args, **kwargs)  # the same message twice to the same sockets
            await emit(event, data, namespace="/messages")  # and once to every socket, members or not

    sio.emit = doubling_emit  # type: ignore[method-assign]
    _, result = await run(server, users=4, group_size=2, warmup=0.0)
    assert result.errors["duplicate deliveries"] == 1 + 1  # the repeat, then the broadcast to the same member
    assert result.errors["deliveries to a non-member"] == 2  # the other chat's two sockets
    assert "missing deliveries" not in result.errors


async def test_idle_sockets_stay_connected_and_report_server_memory(server: Server) -> None:
    # the server runs in this process here, so its memory is this process's
    _, result = await run(server, users=8, group_size=2, idle=True, duration=2.5, server_pid=os.getpid())
    assert result.connected == 8 and result.sent == 0 and not result.errors
    assert set(result.memory) == {"rssBeforeKiB", "rssAfterKiB", "rssPeakKiB", "perConnectionKiB"}
    assert result.memory["rssAfterKiB"] > 0 and result.connect.count == 8


async def test_sending_runs_report_server_memory_too(server: Server) -> None:
    _, result = await run(server, users=4, group_size=2, rate=40.0, server_pid=os.getpid())
    assert set(result.memory) == {"rssBeforeKiB", "rssAfterKiB", "rssPeakKiB", "perConnectionKiB"}
    assert result.memory["rssPeakKiB"] >= result.memory["rssAfterKiB"] > 0 and not result.errors
    assert "server memory" in summary(result) and result.as_dict()["serverMemory"] == result.memory


async def test_the_progress_line_counts_the_warm_up(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    """During the warm-up, messages go out and are counted: a line saying `sent 0` then would be wrong."""
    _, result = await run(server, users=4, group_size=2, warmup=1.6, duration=0.3, progress=True)
    warming = [line for line in capsys.readouterr().err.splitlines() if "] warming up:" in line]
    assert warming, "no progress line during the warm-up"
    sent = int(warming[0].split(", sent ")[1].split(",")[0])
    assert 0 < sent <= result.sent_all


async def test_rss_reads_this_process() -> None:
    assert rss_kib(os.getpid()) > 1000


def test_the_default_url_is_where_the_server_listens_by_default() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args([]).url == f"http://127.0.0.1:{Config().server.port}"


async def test_a_server_pid_that_cannot_be_read_here_is_refused() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "loadtest", "--server-pid", str(2**22 + 7),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert f"--server-pid: no process {2**22 + 7} whose memory can be read here" in err.decode()


async def test_lean_socket_refused_with_a_bad_token(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        sock = LeanSocket()
        with pytest.raises(SocketClosed, match="unauthorized"):
            await sock.connect(session, server.url, "not-a-token")
        await sock.close()


async def test_lean_socket_sees_the_server_hang_up(server: Server, make_user: Any) -> None:
    user = await make_user()
    async with aiohttp.ClientSession() as session:
        sock = LeanSocket()
        await sock.connect(session, server.url, user.token)
        assert sock.connected
        answer = await sock.emit("send_message", {"chatId": "0" * 24, "content": "hello"})
        assert answer["success"] is False and answer["error"]["code"] == "MSG_002"
        sids = [sid for sid, _ in server.app[SIO].manager.get_participants("/messages", None)]
        assert len(sids) == 1
        await server.app[SIO].disconnect(sids[0], namespace="/messages")
        for _ in range(100):
            if not sock.connected:
                break
            await asyncio.sleep(0.02)
        assert sock.closed_by_server and not sock.connected
        with pytest.raises(SocketClosed):
            await sock.emit("send_message", {"chatId": "0" * 24, "content": "hello"})
        await sock.close()


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 0.5) == 0.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0 and percentile(values, 0.99) == 99.0 and percentile(values, 1.0) == 100.0
    summary = Summary.of([0.001, 0.002, 0.003])
    assert (summary.count, summary.p50, summary.max) == (3, 2.0, 3.0)


async def test_the_command_prints_a_summary_and_one_json_line(server: Server) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        "loadtest",
        "--url",
        server.url,
        "--users",
        "4",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    lines = out.decode().strip().splitlines()
    assert process.returncode == 0, (out, err)
    assert lines[0].startswith("WhatsChat load test against " + server.url)
    report = json.loads(lines[-1])
    assert report["users"] == 4 and report["connected"] == 4 and report["errors"] == {}
    assert report["acked"] == report["sent"] > 0 and report["delivered"] == report["expectedDeliveries"]
    assert "] measuring: connected 4" in err.decode()  # the progress line


async def test_the_command_fails_on_an_impossible_split(server: Server) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "loadtest", "--url", server.url, "--users", "5", "--group-size", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode != 0
    assert "5 users do not split into chats of 2" in err.decode()


# the plain WebSocket door (`--door ws`): the same accounting, and the echo to the sender checked beside it


async def test_ws_door_closed_loop_counts_match_the_store(server: Server) -> None:
    test, result = await run(server, users=6, group_size=2, door="ws")
    assert test.population is not None
    assert result.connected == 6
    assert result.sent > 0 and result.acked == result.sent
    assert result.delivered == result.expected == result.acked
    assert result.end_to_end.count == result.delivered and result.ack.count == result.acked
    assert result.echoed == result.acked_all  # each message came back once to its sender's connection
    assert not result.errors, result.errors
    assert clean(result)
    assert await stored_messages(server, test.population.chat_ids) == result.acked_all == result.sent_all
    data = result.as_dict()
    assert data["door"] == "ws" and data["echoed"] == result.echoed
    assert len(server.app[HUB]) == 0  # every connection closed at the end of the run


async def test_ws_door_paced_group_sends_reach_every_other_member(server: Server) -> None:
    test, result = await run(server, users=6, group_size=3, rate=40.0, door="ws")
    assert test.population is not None
    assert 0 < result.acked <= 40 * 1.0 + 1
    assert result.expected == 2 * result.acked and result.delivered == result.expected
    assert result.echoed == result.acked_all
    assert not result.errors, result.errors
    assert await stored_messages(server, test.population.chat_ids) == result.acked_all


async def test_ws_door_a_withheld_message_is_reported_missing_and_unechoed(server: Server) -> None:
    hub = server.app[HUB]
    apply = hub.apply
    withheld: list[Any] = []

    def withholding_apply(instruction: dict[str, Any]) -> None:
        if instruction.get("event") == "new_message" and not withheld:
            withheld.append(instruction)  # neither the recipient nor the sender's own connection gets it
            return
        apply(instruction)

    hub.apply = withholding_apply  # type: ignore[method-assign]
    _, result = await run(server, users=4, group_size=2, warmup=0.0, door="ws")
    assert len(withheld) == 1
    assert result.errors == {"missing deliveries": 1, "missing echoes": 1}
    assert result.delivered == result.expected - 1 and result.echoed == result.acked_all - 1
    assert not clean(result)
    assert "missing echoes 1" in summary(result)


async def test_ws_door_duplicate_and_foreign_deliveries_are_reported(server: Server) -> None:
    hub = server.app[HUB]
    apply = hub.apply
    state = {"doubled": False}

    def doubling_apply(instruction: dict[str, Any]) -> None:
        apply(instruction)
        if instruction.get("event") == "new_message" and not state["doubled"]:
            state["doubled"] = True
            apply(instruction)  # the same message twice to the same connections
            apply({**instruction, "op": "users", "user_ids": list(hub.users)})  # and once to everyone connected

    hub.apply = doubling_apply  # type: ignore[method-assign]
    _, result = await run(server, users=4, group_size=2, warmup=0.0, door="ws")
    assert result.errors["duplicate deliveries"] == 2  # the repeat, then the broadcast, at the other member
    assert result.errors["duplicate echoes"] == 2  # the same two at the sender
    assert result.errors["deliveries to a non-member"] == 2  # the other chat's two connections
    assert "missing deliveries" not in result.errors and "missing echoes" not in result.errors


async def test_the_command_loads_the_ws_door(server: Server) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "loadtest", "--url", server.url, "--door", "ws",
        "--users", "4", "--duration", "1", "--warmup", "0.2", "--quiet",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    lines = out.decode().strip().splitlines()
    assert process.returncode == 0, (out, err)
    assert lines[0].endswith(", closed-loop, plain WebSocket /ws)")
    assert "echoed to their senders" in lines[2]
    report = json.loads(lines[-1])
    assert report["door"] == "ws" and report["connected"] == 4 and report["errors"] == {}
    assert report["acked"] == report["sent"] > 0 and report["delivered"] == report["expectedDeliveries"]
    assert report["echoed"] == report["ackedIncludingWarmup"]


async def test_an_unknown_door_is_refused() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "loadtest", "--door", "carrier-pigeon",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2 and "invalid choice: 'carrier-pigeon'" in err.decode()
    with pytest.raises(ValueError, match="carrier-pigeon"):
        LoadTest(Options(url="http://127.0.0.1:1", door="carrier-pigeon"))


async def test_plain_socket_refused_with_a_bad_token(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        sock = PlainSocket()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await sock.connect(session, server.url, "not-a-token")
        assert refused.value.status == 401
        await sock.close()


async def test_plain_socket_sees_its_login_logged_out(server: Server, api: Api, make_user: Any) -> None:
    user = await make_user()
    async with aiohttp.ClientSession() as session:
        sock = PlainSocket()
        await sock.connect(session, server.url, user.token)
        assert sock.connected and sock.user_id == user.id
        assert await sock.send_message("0" * 24, "hello", "c1") == "not_found"
        assert (await sock.request("ping", None))["type"] == "pong"
        status, body = await api.post("/auth/logout", token=user.token)  # through the other door: every door ends
        assert status == 200, body
        for _ in range(100):
            if not sock.connected:
                break
            await asyncio.sleep(0.02)
        assert sock.closed_by_server and not sock.connected and sock.close_code == 4001
        with pytest.raises(SocketClosed):
            await sock.send_message("0" * 24, "hello", "c2")
        await sock.close()
