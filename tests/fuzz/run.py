"""Bounded fuzzing of a live server: `make fuzz` (CI runs it after the tests).

1. schemathesis drives every REST operation of the published OpenAPI documents,
   `/api/v1/openapi.json` and then the Go Chat Web door's `/api/openapi.json`,
   with generated requests (as a user registered through that door) and checks
   that nothing answers 500, every answer matches its schema and status, and
   nothing hangs.
2. A Socket.IO fuzzer sends generated payloads on every client event of every
   namespace (hypothesis strategies built from the AsyncAPI payload schemas,
   plus arbitrary JSON) and malformed Engine.IO / Socket.IO frames, and checks
   that every event gets an ack or error answer and the server stays up.
3. A `/ws` fuzzer (`tests/fuzz/ws.py`) sends generated and malformed frames on
   the plain WebSocket and checks that each is answered as the protocol says,
   every frame back matches the AsyncAPI document, and the connection stays
   usable.

Every loop is bounded in count and time; the run prints how many cases each
part tried and exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.fuzz.sockets import fuzz_sockets
from tests.fuzz.ws import fuzz_ws
from tests.redis_support import free_port

ROOT = Path(__file__).resolve().parents[2]
# Location-header inference off: it scans answers for same-origin URLs, and schemathesis 4.32 stops the whole
# run with "Invalid IPv6 URL" on a string like `http://[x` that a user wrote (a message, a bio) and we echo
ST_CONFIG = Path(__file__).resolve().with_name("schemathesis.toml")
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "allow_header_conformance",
    )
)


def start_server(data_dir: str, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHATSCHAT_")}
    env.update(
        WHATSCHAT_DATA_DIR=data_dir,
        WHATSCHAT_SERVER_HOST="127.0.0.1",
        WHATSCHAT_SERVER_PORT=str(port),
        WHATSCHAT_AUTH_BCRYPT_ROUNDS="4",
        WHATSCHAT_AUTH_LOGIN_FAILURES_PER_ACCOUNT="1000000",
        WHATSCHAT_AUTH_LOGIN_FAILURES_PER_ADDRESS="1000000",
        WHATSCHAT_LIMITS_MESSAGES_PER_SECOND="100000",
        WHATSCHAT_LIMITS_MESSAGES_BURST="100000",
        WHATSCHAT_LIMITS_TYPING_PER_SECOND="100000",
        WHATSCHAT_LIMITS_TYPING_BURST="100000",
        WHATSCHAT_LIMITS_READS_PER_SECOND="100000",
        WHATSCHAT_LIMITS_READS_BURST="100000",
        WHATSCHAT_LIMITS_UPLOADS_PER_SECOND="100000",
        WHATSCHAT_LIMITS_UPLOADS_BURST="100000",
        WHATSCHAT_LOGGING_LEVEL="ERROR",
    )
    return subprocess.Popen([sys.executable, "-m", "server", "serve"], cwd=ROOT, env=env)


async def wait_healthy(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{url}/api/v1/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"the server at {url} did not become healthy")


async def register(url: str, name: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        body = {"username": name, "email": f"{name}@example.com", "password": "Passw0rd"}
        async with http.post(f"{url}/api/v1/auth/register", json=body) as response:
            data = await response.json()
            assert response.status == 201, data
            return data["data"]


async def register_go(url: str, name: str) -> dict[str, Any]:
    """A user registered and logged in through the Go Chat Web door: its login answer's `data`."""
    async with aiohttp.ClientSession() as http:
        body = {"name": name, "email": f"{name}@example.com", "password": "Passw0rd"}
        async with http.post(f"{url}/api/auth/register", json=body) as response:
            assert response.status == 201, await response.text()
        async with http.post(
            f"{url}/api/auth/login", json={"email": body["email"], "password": "Passw0rd"}
        ) as response:
            data = await response.json()
            assert response.status == 200, data
            return data["data"]


def run_schemathesis(
    url: str, token: str, examples: int, max_time: int, seed: int, base: str = "/api/v1"
) -> tuple[bool, str]:
    """schemathesis over the OpenAPI document of the door at `base` (`<base>/openapi.json`)."""
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(ST_CONFIG),
        "run",
        f"{url}{base}/openapi.json",
        "--url",
        f"{url}{base}",
        "-H",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(examples),
        "--max-time",
        str(max_time),
        "--request-timeout",
        "10",
        "--max-response-time",
        "5",
        "--exclude-path",
        "/auth/logout",  # it would revoke the fuzzer's own token
        "--seed",
        str(seed),
        "--no-color",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=max_time + 120, check=False)
    output = result.stdout + result.stderr
    return result.returncode == 0, output


def report_schemathesis(base: str, ok: bool, output: str, started: float) -> None:
    generated = re.search(r"(\d+) generated", output)
    print(output[-4000:] if not ok else "\n".join(output.strip().splitlines()[-12:]))
    cases = generated.group(1) if generated else "?"
    took = time.monotonic() - started
    print(f"schemathesis {base}: {cases} REST cases, {'passed' if ok else 'FAILED'} ({took:.0f} s)")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=15, help="schemathesis examples per operation")
    parser.add_argument("--max-time", type=int, default=120, help="schemathesis time budget in seconds")
    parser.add_argument("--go-examples", type=int, default=10, help="schemathesis examples per /api operation")
    parser.add_argument("--go-max-time", type=int, default=45, help="schemathesis time budget for /api")
    parser.add_argument("--socket-examples", type=int, default=25, help="generated payloads per socket event")
    parser.add_argument("--ws-frames", type=int, default=1000, help="generated frames on /ws")
    parser.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data_dir:
        server = start_server(data_dir, port)
        try:
            await wait_healthy(url)
            fuzzer, friend = await register(url, "fuzzer"), await register(url, "friend")
            started = time.monotonic()
            ok, output = await asyncio.to_thread(
                run_schemathesis, url, fuzzer["token"], args.examples, args.max_time, args.seed
            )
            report_schemathesis("/api/v1", ok, output, started)
            go_fuzzer, go_friend = await register_go(url, "gofuzzer"), await register_go(url, "gofriend")
            started = time.monotonic()
            go_ok, output = await asyncio.to_thread(
                run_schemathesis, url, go_fuzzer["access_token"], args.go_examples, args.go_max_time, args.seed, "/api"
            )
            report_schemathesis("/api", go_ok, output, started)
            started = time.monotonic()
            socket_report = await fuzz_sockets(url, fuzzer, friend, args.socket_examples, args.seed)
            print(f"{socket_report.summary()} ({time.monotonic() - started:.0f} s)")
            started = time.monotonic()
            friend_id = go_friend["user"]["user_id"]
            ws_report = await fuzz_ws(url, go_fuzzer["access_token"], friend_id, args.ws_frames, args.seed)
            print(f"{ws_report.summary()} ({time.monotonic() - started:.0f} s)")
            await wait_healthy(url, 5)
            if server.poll() is not None:
                print("the server process died")
                return 1
            return 0 if ok and go_ok and socket_report.ok and ws_report.ok else 1
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
