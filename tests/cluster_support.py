"""Real `python -m server serve` processes for tests: one or several, sharing a Redis and a data folder.

`Node` is one process with its own port; `server_env` is the environment every node of one
deployment shares (one SQLite folder in WAL, one JWT secret, one Redis URL). Every wait is
bounded; `kill()` is SIGKILL, for tests of a process that dies without a goodbye.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.redis_support import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "multiprocess-test-secret-0123456789abcdef0123"


def wait_until(predicate: Callable[[], bool], seconds: float, what: str, log: Callable[[], str] = lambda: "") -> None:
    """Poll `predicate` every 50 ms; fail the test with `what` and the log when `seconds` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"{what} within {seconds} s\n{log()}")


def tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


def server_env(data_dir: Path, redis_url: str, port: int, **settings: str) -> dict[str, str]:
    """The environment of one node: shared data folder, secret and Redis; `settings` are more WHATSCHAT_ keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHATSCHAT_")}
    env.update(
        WHATSCHAT_DATA_DIR=str(data_dir),
        WHATSCHAT_SERVER_HOST="127.0.0.1",
        WHATSCHAT_SERVER_PORT=str(port),
        WHATSCHAT_REDIS_URL=redis_url,
        WHATSCHAT_AUTH_BCRYPT_ROUNDS="4",
        WHATSCHAT_AUTH_JWT_SECRET=SECRET,
        WHATSCHAT_PRESENCE_GRACE_PERIOD="0.2",
        WHATSCHAT_CALLS_RING_TIMEOUT="10",
        WHATSCHAT_LOGGING_LEVEL="WARNING",
    )
    env.update(settings)
    return env


def health(url: str) -> tuple[int, dict[str, Any]]:
    """GET /api/v1/health on a fresh connection: (status, data); (0, {}) when nothing answers."""
    try:
        with urllib.request.urlopen(url + "/api/v1/health", timeout=3) as response:
            return response.status, json.loads(response.read())["data"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()).get("data", {})
    except (OSError, ValueError):
        return 0, {}


@dataclass
class Node:
    """One `python -m server serve` process."""

    name: str
    env: dict[str, str]
    log: Path
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['WHATSCHAT_SERVER_PORT']}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, seconds: float = 30) -> None:
        """Start it and wait until health says `healthy` (so its Redis channel is subscribed)."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server", "serve", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"server {self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            status, data = health(self.url)
            return status == 200 and data.get("status") == "healthy"

        wait_until(ready, seconds, f"server {self.name} did not become healthy", self.tail)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not gone within 20 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL: the process dies mid-work, saying goodbye to nobody."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self) -> str:
        return tail(self.log)


@dataclass
class Cluster:
    redis: RedisServer
    a: Node
    b: Node

    def logs(self) -> str:
        return f"A:\n{self.a.tail()}\nB:\n{self.b.tail()}\nredis:\n{self.redis.tail()}"


def two_processes(folder: Path) -> Iterator[Cluster]:
    """Two server processes, A and B, sharing one database and one redis-server; stopped when the generator closes."""
    redis = RedisServer(log=folder / "redis.log")
    nodes: list[Node] = []
    try:
        redis.start()  # before its URL is handed out: a taken port can still be swapped for another
        nodes = [
            Node(name, server_env(folder / "data", redis.url, free_port()), folder / f"server-{name}.log")
            for name in ("A", "B")
        ]
        for node in nodes:  # one after the other: the first creates the database
            node.start()
        yield Cluster(redis, *nodes)
    finally:
        for node in nodes:
            node.stop()
        redis.stop()
