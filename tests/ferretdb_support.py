"""FerretDB 1.24 for the tests: a real MongoDB wire-protocol server on its SQLite backend.

`make ferretdb` builds it (`tools/ferretdb`, a few lines embedding FerretDB's Go
package) into `.cache/ferretdb/`, and `make test` does that first. A test that needs it
and finds no binary is skipped locally and fails under CI, like a missing redis-server.
`shared_url()` starts one server per test process, on a free loopback port with a
temporary folder, the first time a test asks, and stops it when the process exits.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.redis_support import _kill, _running, free_port

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / ".cache" / "ferretdb" / "ferretdb"
START_SECONDS = 20.0


def require_ferretdb() -> Path:
    if BINARY.exists():
        return BINARY
    message = f"FerretDB is not built ({BINARY}): run `make ferretdb` (it needs Go)"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must not skip)")
    pytest.skip(message)


class FerretDB:
    """One `ferretdb` process on 127.0.0.1 with its SQLite files in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.binary = require_ferretdb()
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def log(self) -> Path:
        return self.folder / "ferretdb.log"

    def start(self) -> FerretDB:
        """Start it and wait until it accepts connections; fails the test if it never does."""
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [str(self.binary), "-listen-addr", f"127.0.0.1:{self.port}", "-sqlite-dir", str(self.folder / "db")]
        with open(self.log, "ab") as output:
            self.proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _running.add(self.proc)
        deadline = time.monotonic() + START_SECONDS
        while self.proc.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"FerretDB did not start on 127.0.0.1:{self.port}\n{self.tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            _kill(proc)

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no FerretDB log)"


_shared: FerretDB | None = None


def shared_url() -> str:
    """The URL of this test process's FerretDB, started on first use (each test uses its own database)."""
    global _shared
    if _shared is None or _shared.proc is None or _shared.proc.poll() is not None:
        _shared = FerretDB(Path(tempfile.mkdtemp(prefix="whatschat-ferretdb-"))).start()
        atexit.register(_shared.stop)
    return _shared.url
