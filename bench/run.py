"""`make bench`: WhatsChat and a bare python-socketio server under the same load.

Six scenarios, each against a fresh server pinned to CPU 0 with the load test
pinned to CPU 1: `dm` (pairs, closed loop), `ws-dm` (`dm` through the Go Chat
Web door's plain WebSocket at `/ws`; WhatsChat only), `group` (groups of 50 at fixed
rates, swept for the highest rate whose end-to-end p99 stays under 100 ms),
`idle` (authenticated idle sockets: server memory per connection), `multi`
(`dm` and `group` through one and two WhatsChat processes on one Redis, the
second process on CPU 1 beside the load test) and `history` (pages of a chat
holding a million messages; WhatsChat only). `dm`, `ws-dm` and `idle`
run with and without permessage-deflate offered. The table goes to stdout and,
with the machine and a profile of `dm`, to `docs/performance.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.profile import profile_summary
from bench.report import render
from bench.seed import seed_history
from bench.servers import CLIENT_CPU, loadtest, pinned, redis_server, server

TARGETS = ("whatschat", "baseline")
SCENARIOS = ("dm", "ws-dm", "group", "idle", "multi", "history")
P99_LIMIT_MS = 100.0


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; `--smoke` shrinks them so the bench itself can be tested quickly."""

    dm_users: int = 200
    dm_seconds: float = 20.0
    group_users: int = 500
    group_size: int = 50
    group_seconds: float = 10.0
    group_start_rate: float = 100.0
    group_steps: int = 12
    idle_sockets: int = 2000
    idle_seconds: float = 8.0
    history_messages: int = 1_000_000
    history_requests: int = 500
    warmup: float = 3.0
    profile_seconds: float = 15.0
    # settings for the server under test beyond `make run`'s (none for real figures)
    server_env: tuple[tuple[str, str], ...] = ()


SMOKE = Sizes(
    dm_users=4,
    dm_seconds=1.0,
    group_users=6,
    group_size=3,
    group_seconds=1.0,
    group_start_rate=20.0,
    group_steps=2,
    idle_sockets=10,
    idle_seconds=2.5,
    history_messages=2_000,
    history_requests=20,
    warmup=0.3,
    profile_seconds=2.0,
    # four closed-loop senders go far past the per-user budget of 100 messages a second
    server_env=(("WHATSCHAT_LIMITS_MESSAGES_PER_SECOND", "100000"), ("WHATSCHAT_LIMITS_MESSAGES_BURST", "100000")),
)


def dm(target: str, sizes: Sizes, deflate: bool) -> dict[str, Any]:
    with server(target, env=dict(sizes.server_env)) as running:
        return loadtest(
            running.url,
            *("--users", str(sizes.dm_users), "--group-size", "2"),
            *("--duration", str(sizes.dm_seconds), "--warmup", str(sizes.warmup)),
            *(["--deflate"] if deflate else []),
        )


def ws_dm(sizes: Sizes, deflate: bool) -> dict[str, Any]:
    """`dm` through `/ws`: the same users, pairs, loop and window, JSON frames instead of Socket.IO packets.

    WhatsChat only (the bare python-socketio server has no `/ws`); its table rows sit
    beside `dm`'s, so the two doors of one server compare directly.
    """
    with server("whatschat", env=dict(sizes.server_env)) as running:
        return loadtest(
            running.url,
            *("--door", "ws", "--users", str(sizes.dm_users), "--group-size", "2"),
            *("--duration", str(sizes.dm_seconds), "--warmup", str(sizes.warmup)),
            *(["--deflate"] if deflate else []),
        )


def _group_at(url: str, sizes: Sizes, rate: float, extra: list[str] | None = None) -> dict[str, Any]:
    return loadtest(
        url,
        *(extra or []),
        *("--users", str(sizes.group_users), "--group-size", str(sizes.group_size), "--rate", f"{rate:g}"),
        *("--duration", str(sizes.group_seconds), "--warmup", str(sizes.warmup)),
    )


def _within_limit(run: dict[str, Any]) -> bool:
    return not run["errors"] and run["endToEndMs"]["p99"] < P99_LIMIT_MS


def group_sweep(target: str, sizes: Sizes) -> dict[str, Any]:
    with server(target, env=dict(sizes.server_env)) as running:
        return _sweep_at(running.url, sizes)


def _sweep_at(url: str, sizes: Sizes, extra: list[str] | None = None) -> dict[str, Any]:
    """Raise the rate by half until p99 passes the limit (or errors appear), then bisect twice."""
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    rate, failed = sizes.group_start_rate, None
    for _ in range(sizes.group_steps):
        run = _group_at(url, sizes, rate, extra)
        steps.append(run)
        if not _within_limit(run):
            failed = rate
            break
        best = run
        rate *= 1.5
    for _ in range(2 if failed and best else 0):
        assert best is not None and failed is not None
        rate = (best["rate"] + failed) / 2
        run = _group_at(url, sizes, rate, extra)
        steps.append(run)
        if _within_limit(run):
            best = run
        else:
            failed = rate
    return {"best": best, "steps": steps}


@contextlib.contextmanager
def deployment(sizes: Sizes, processes: int) -> Iterator[list[str]]:
    """WhatsChat on one Redis: `processes` servers (CPU 0, then CPU 1) sharing a data folder: their URLs."""
    folder = Path(tempfile.mkdtemp(prefix="bench-multi-"))
    try:
        with redis_server() as redis, contextlib.ExitStack() as stack:
            env = {**dict(sizes.server_env), "WHATSCHAT_REDIS_URL": redis}
            urls = []
            for n in range(processes):  # one after the other: the first creates the database and the secret
                running = stack.enter_context(server("whatschat", data_dir=folder, env=env, cpu=str(n % 2)))
                urls.append(running.url)
            yield urls
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def multi(sizes: Sizes) -> dict[str, Any]:
    """`dm` and the `group` sweep through one process on Redis and through two, each on its own core.

    One process without Redis is the `dm`/`group` rows above. With Redis every
    event goes through Redis and back, in one order for every process, and every
    answer waits for Redis to take its events: the price of the ordering. With two
    processes, the members of each chat sit on different processes.
    """
    out: dict[str, Any] = {}
    for processes in (1, 2):
        with deployment(sizes, processes) as urls:
            extra = [arg for url in urls[1:] for arg in ("--also-url", url)]
            print(f"dm, {processes} process(es) on Redis", flush=True)
            out[f"dm/{processes}"] = loadtest(
                urls[0],
                *extra,
                *("--users", str(sizes.dm_users), "--group-size", "2"),
                *("--duration", str(sizes.dm_seconds), "--warmup", str(sizes.warmup)),
            )
            print(f"group sweep, {processes} process(es) on Redis", flush=True)
            out[f"group/{processes}"] = _sweep_at(urls[0], sizes, extra)
    return out


def idle(target: str, sizes: Sizes, deflate: bool) -> dict[str, Any]:
    with server(target, env=dict(sizes.server_env)) as running:
        return loadtest(
            running.url,
            *("--users", str(sizes.idle_sockets), "--idle", "--duration", str(sizes.idle_seconds)),
            *("--server-pid", str(running.pid)),
            *(["--deflate"] if deflate else []),
        )


def history(sizes: Sizes) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bench-history-"))
    try:
        started = time.monotonic()
        seeded = asyncio.run(seed_history(folder, sizes.history_messages, progress=False))
        seconds = time.monotonic() - started
        with server("whatschat", data_dir=folder, env=dict(sizes.server_env)) as running:
            command = [
                sys.executable, "-m", "server.loadtest.history", running.url,
                seeded.email, seeded.password, seeded.chat_id, seeded.cursor_id, seeded.search_term,
                "--requests", str(sizes.history_requests), "--json",
            ]  # fmt: skip
            done = subprocess.run(pinned(CLIENT_CPU, command), capture_output=True, text=True, check=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        return {"messages": seeded.count, "searchMatches": seeded.search_matches, "seedSeconds": seconds, **figures}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def profile(sizes: Sizes) -> str:
    """A py-spy profile of WhatsChat's server during `dm`, summarised (empty without py-spy)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return ""
    with server("whatschat", env=dict(sizes.server_env)) as running, tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "dm.txt"
        recorder = subprocess.Popen(
            [spy, "record", "--pid", str(running.pid), "--gil", "--rate", "200", "--format", "raw",
             "--duration", str(math.ceil(sizes.profile_seconds + sizes.warmup + 2)), "--output", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        loadtest(
            running.url,
            *("--users", str(sizes.dm_users), "--duration", str(sizes.profile_seconds), "--warmup", str(sizes.warmup)),
        )
        recorder.wait(60)
        return profile_summary(raw.read_text()) if raw.exists() else ""


def machine() -> dict[str, str]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("python-socketio", "python-engineio", "aiohttp", "aiosqlite", "orjson", "uvloop")
    )
    return {
        "cpu": model,
        "cores": str(os.cpu_count() or 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "libraries": versions,
        "date": time.strftime("%Y-%m-%d"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the bench works, measures nothing")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated, of %(default)s (default: all; `--scenarios dm,ws-dm` compares the two doors)",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/performance.md"), help="the page to write")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON here")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else Sizes()
    wanted = set(args.scenarios.split(","))
    if unknown := wanted - set(SCENARIOS):
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}: choose from {', '.join(SCENARIOS)}")
    results: dict[str, Any] = {"machine": machine(), "sizes": sizes.__dict__}
    for target in TARGETS:
        if "dm" in wanted:
            for deflate in (False, True):
                print(f"dm, {target}, deflate {'offered' if deflate else 'not offered'}", flush=True)
                results[f"dm/{target}/{'deflate' if deflate else 'plain'}"] = dm(target, sizes, deflate)
        if "ws-dm" in wanted and target == "whatschat":
            for deflate in (False, True):
                print(f"ws-dm, {target}, deflate {'offered' if deflate else 'not offered'}", flush=True)
                results[f"ws-dm/{target}/{'deflate' if deflate else 'plain'}"] = ws_dm(sizes, deflate)
        if "group" in wanted:
            print(f"group sweep, {target}", flush=True)
            results[f"group/{target}"] = group_sweep(target, sizes)
        if "idle" in wanted:
            for deflate in (False, True):
                print(f"idle, {target}, deflate {'offered' if deflate else 'not offered'}", flush=True)
                results[f"idle/{target}/{'deflate' if deflate else 'plain'}"] = idle(target, sizes, deflate)
    if "multi" in wanted:
        results["multi"] = multi(sizes)
    if "history" in wanted:
        print(f"history, {sizes.history_messages:,} messages", flush=True)
        results["history"] = history(sizes)
    if "dm" in wanted:
        print("profile of dm (py-spy)", flush=True)
        results["profile"] = profile(sizes)
    page = render(results)
    print(page.split("\n## ", 2)[1] if "\n## " in page else page)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
