"""`python -m server` as a real subprocess, for the tests of how it starts, fails and stops.

`run_server` starts it and waits, bounded, for it to exit: what a person at a terminal
sees (exit status, stdout, stderr) and how long it took. `without_dac_override` makes the
child a process that file permissions apply to, as they do to a normal user: tests and
CI often run as root, whom a read-only folder does not stop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WAIT_SECONDS = 30.0  # a generous bound on the test's own wait: a start that fails well within it is checked


@dataclass
class Outcome:
    code: int | None  # None: still running when the wait ran out (it was killed)
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def describe(self) -> str:
        return f"exit {self.code} after {self.seconds:.2f} s\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def clean_env(**settings: str) -> dict[str, str]:
    """This environment without any WHATSCHAT_ variable, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHATSCHAT_")}
    return {**env, **settings}


def run_server(
    *args: str,
    env: dict[str, str],
    seconds: float = WAIT_SECONDS,
    preexec: Callable[[], None] | None = None,
) -> Outcome:
    """`python -m server *args`, waited for at most `seconds` (then killed: `code` None)."""
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=preexec,
    )
    try:
        out, err = proc.communicate(timeout=seconds)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        code = None
    return Outcome(code, out.decode(errors="replace"), err.decode(errors="replace"), time.monotonic() - began)


# capabilities that let root ignore file permissions (linux/capability.h)
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER = 1, 2, 3
_PR_CAPBSET_DROP = 24


def _drop_override() -> None:
    """In the child, before exec: take the overrides out of the bounding set, so exec cannot grant them."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def without_dac_override(read_only_folder: Path) -> Callable[[], None] | None:
    """A `preexec` for `run_server` under which `read_only_folder` cannot be written (None: no change needed).

    A normal user needs nothing. Root keeps its uid (the interpreter may live where only root
    reads, such as /root/.pyenv) and loses the capabilities that override permissions. Checked
    first with a child that tries to write there: if it still can, the test cannot show anything
    (a skip locally, a failure under CI).
    """
    preexec = _drop_override if os.geteuid() == 0 else None
    probe = read_only_folder / "probe"
    try:
        result = subprocess.run(
            [sys.executable, "-c", f"open({str(probe)!r}, 'w')"], preexec_fn=preexec, capture_output=True, timeout=30
        )
    except subprocess.SubprocessError as exc:  # the capabilities could not be dropped here
        why = str(exc)
    else:
        if result.returncode != 0:
            return preexec  # refused: the folder is read-only for such a process
        probe.unlink()
        why = "it wrote there"
    message = f"cannot make a process that {read_only_folder} (mode 0555) stops from writing: {why}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must not skip)")
    pytest.skip(message)
