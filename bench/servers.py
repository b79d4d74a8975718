"""Servers and load generators for `make bench`, each pinned to its own core.

The server under test gets CPU 0 and the load generator CPU 1 (`taskset`), so
neither steals time from the other and a figure says what one core of server
does. Each server starts as `make run` would start it, with a fresh data folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVER_CPU = "0"
CLIENT_CPU = "1"


def pinned(cpu: str, command: list[str]) -> list[str]:
    """The command run on one CPU when `taskset` exists (it does on Debian)."""
    return ["taskset", "-c", cpu, *command] if shutil.which("taskset") else command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Running:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url + "/api/v1/health", timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become healthy in {timeout:g} s")


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A private `redis-server` on a free loopback port, without persistence: its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("the multi-process scenario needs redis-server (make test installs it)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def server(
    kind: str, data_dir: Path | None = None, env: dict[str, str] | None = None, cpu: str = SERVER_CPU
) -> Iterator[Running]:
    """`whatschat` (as `make run` starts it) or `baseline` (bare python-socketio), on CPU `cpu`."""
    port = free_port()
    folder = data_dir or Path(tempfile.mkdtemp(prefix=f"bench-{kind}-"))
    if kind == "whatschat":
        command = [sys.executable, "-m", "server", "serve", "--port", str(port)]
    else:
        command = [sys.executable, "-m", "bench.baseline", "--port", str(port)]
    environment = {
        **os.environ,
        "WHATSCHAT_DATA_DIR": str(folder),
        # set-up registers thousands of users; the default cost (0.23 s a hash) would take minutes
        # and is not what is measured: no password is checked while measuring
        "WHATSCHAT_AUTH_BCRYPT_ROUNDS": "4",
        "WHATSCHAT_LOGGING_LEVEL": "WARNING",
        **(env or {}),
    }
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / f"server-{port}.log", "wb")  # noqa: SIM115 - closed in `finally`, after the server stops
    process = subprocess.Popen(pinned(cpu, command), env=environment, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield Running(kind, url, process, folder)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        if data_dir is None:
            shutil.rmtree(folder, ignore_errors=True)


def loadtest(url: str, *args: str, timeout: float = 900.0) -> dict[str, Any]:
    """Run `python -m server loadtest` on CPU 1 and answer its JSON line."""
    command = pinned(CLIENT_CPU, [sys.executable, "-m", "server", "loadtest", "--url", url, "--quiet", *args])
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    lines = done.stdout.strip().splitlines()
    if not lines or not lines[-1].startswith("{"):
        raise RuntimeError(f"loadtest {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    print("    " + "\n    ".join(lines[:-1]), flush=True)
    return json.loads(lines[-1])
