"""A private `redis-server` for tests, and a free loopback port.

`RedisServer` runs the real binary with no persistence (`--save "" --appendonly no`), bound to
127.0.0.1 on a free port. Until something has read its `port` or `url`, a first start that fails
(someone took the port between choosing and binding it) moves on to another free port; once the
address is known to others it stays put, so `stop()` then `start()` (or `restart()`) comes back on
the same port. Every wait is bounded, a process that will not stop is killed, and any server still
running when the interpreter exits is killed then.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import pytest

from tests.conftest import require_tool

START_ATTEMPTS = 3  # fresh ports to try while the address is still ours to change
START_SECONDS = 10.0  # how long one start may take to answer PING
STOP_SECONDS = 10.0  # how long SIGTERM, then SIGKILL, may take


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_running: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_running):
        _kill(proc)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not go within `STOP_SECONDS`; always reaped."""
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_SECONDS)
    finally:
        _running.discard(proc)


class RedisServer:
    """A private `redis-server`: no persistence, loopback only; stopped and restarted on the same port.

    `binary` defaults to `require_tool("redis-server")` (a skip locally, a failure under CI); `log`
    collects the server's output (discarded when None) and its folder is the server's `--dir`.
    """

    def __init__(self, binary: str | None = None, log: Path | None = None, *, port: int | None = None) -> None:
        self.binary = binary or require_tool("redis-server")
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._port = port if port is not None else free_port()
        self._pinned = port is not None  # once the address is out, a start may not move it

    @property
    def port(self) -> int:
        self._pinned = True
        return self._port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> RedisServer:
        """Start it (a no-op while it runs) and wait for PING; fails the test if it never answers."""
        if self.running:
            return self
        attempts = 1 if self._pinned else START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self._port = free_port()
            if self._launch():
                self._pinned = True
                return self
        where = f"127.0.0.1:{self._port}, {attempts} attempt(s)"
        pytest.fail(f"redis-server did not answer PING ({where})\n{self.tail()}")

    def stop(self) -> None:
        """Stop it (SIGTERM, SIGKILL after a bounded wait); a no-op when it is not running."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _kill(proc)

    def restart(self) -> RedisServer:
        """Stop, then start again on the same port."""
        self._pinned = True
        self.stop()
        return self.start()

    def pong(self) -> bool:
        """Does something on our port answer PING right now?"""
        try:
            with socket.create_connection(("127.0.0.1", self._port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def tail(self) -> str:
        if self.log is None:
            return "(no redis log)"
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no redis log)"

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _launch(self) -> bool:
        """One process on the current port: True once it answers PING, else it is killed and False."""
        folder = self.log.parent if self.log is not None else Path(tempfile.gettempdir())
        command = [self.binary, "--port", str(self._port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--dir", str(folder)]
        with open(self.log, "ab") if self.log is not None else open(os.devnull, "wb") as output:
            proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _running.add(proc)
        deadline = time.monotonic() + START_SECONDS
        while proc.poll() is None and time.monotonic() < deadline:
            if self.pong() and proc.poll() is None:  # ours, not someone else's on a taken port
                self.proc = proc
                return True
            time.sleep(0.02)
        _kill(proc)
        return False
