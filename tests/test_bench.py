"""`make bench` itself, at toy sizes: it runs every scenario (`ws-dm` too) and writes its page.

The figures of a smoke run mean nothing (a few users for a second); what is
checked is that every scenario ran clean against both servers, pinned as
documented, and that the page and the JSON hold what the run measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool

pytestmark = [pytest.mark.slow, pytest.mark.redis]  # load for many seconds, and the multi-process scenario
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_the_bench_runs_every_scenario_and_writes_its_page(tmp_path: Path) -> None:
    require_tool("taskset")
    require_tool("redis-server")  # the multi-process scenario
    page, figures = tmp_path / "performance.md", tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(page), "--json", str(figures)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(figures.read_text())
    for target in ("whatschat", "baseline"):
        for mode in ("plain", "deflate"):
            dm = results[f"dm/{target}/{mode}"]
            assert dm["connected"] == 4 and dm["errors"] == {}, dm
            assert dm["acked"] == dm["sent"] > 0 and dm["delivered"] == dm["expectedDeliveries"] == dm["acked"]
            assert dm["deflate"] is (mode == "deflate")
            idle = results[f"idle/{target}/{mode}"]
            assert idle["connected"] == 10 and idle["errors"] == {} and "perConnectionKiB" in idle["serverMemory"]
        sweep = results[f"group/{target}"]
        assert sweep["best"] is not None and sweep["steps"], sweep
        assert all(step["delivered"] == step["expectedDeliveries"] for step in sweep["steps"])
    for mode in ("plain", "deflate"):  # `dm` through the plain WebSocket door: WhatsChat only
        ws_dm = results[f"ws-dm/whatschat/{mode}"]
        assert ws_dm["door"] == "ws" and ws_dm["connected"] == 4 and ws_dm["errors"] == {}, ws_dm
        assert ws_dm["acked"] == ws_dm["sent"] > 0 and ws_dm["delivered"] == ws_dm["expectedDeliveries"]
        assert ws_dm["delivered"] == ws_dm["acked"] and ws_dm["echoed"] == ws_dm["ackedIncludingWarmup"]
        assert ws_dm["deflate"] is (mode == "deflate")
    assert not any(key.startswith("ws-dm/baseline") for key in results)
    for processes in (1, 2):  # through Redis, the second process on its own core, each pair split over both
        dm = results["multi"][f"dm/{processes}"]
        assert dm["connected"] == 4 and dm["errors"] == {}, dm
        assert dm["acked"] == dm["sent"] > 0 and dm["delivered"] == dm["expectedDeliveries"] == dm["acked"]
        sweep = results["multi"][f"group/{processes}"]
        assert sweep["best"] is not None and all(s["delivered"] == s["expectedDeliveries"] for s in sweep["steps"])
    history = results["history"]
    assert history["messages"] == 2_000 and history["searchMatches"] > 0
    assert {"newest", "deep", "search"} <= set(history)
    text = page.read_text()
    assert text.startswith("# Performance")
    for row in (
        "| dm, no deflate | messages/s |",
        "| ws-dm, no deflate | messages/s |",
        "| ws-dm, deflate offered | end-to-end p50 / p99 ms |",
        "| group | deliveries/s",
        "| idle, deflate offered |",
        "history, 2,000",
        "| two processes on one Redis (CPU 0 and 1) |",
    ):
        assert row in text, row
    assert "## Where the time goes" in text and "samples." in text  # the py-spy summary


def test_an_unknown_scenario_is_refused_before_anything_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--scenarios", "dm,ws_dm", "--out", "/dev/null"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "unknown scenario(s) ws_dm" in done.stderr
