"""Latency of history pages in one long chat: the newest page, a deep cursor, a search.

One client, one keep-alive connection, requests one after another: what is
measured is the server's time for each page (plus a loopback round trip), not
how it shares itself between clients. Every answer is checked (status 200, as
many messages as the page can hold, newest first), so a fast wrong answer never
counts as a fast one.

    python -m server.loadtest.history BASE_URL EMAIL PASSWORD CHAT_ID CURSOR_ID TERM [--requests N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import aiohttp

from server.loadtest.stats import Summary

LIMIT = 50
KINDS = ("newest", "deep", "search")


class WrongAnswer(Exception):
    """The server answered a history request with something other than the expected page."""


async def _login(session: aiohttp.ClientSession, base_url: str, email: str, password: str) -> str:
    async with session.post(f"{base_url}/api/v1/auth/login", json={"email": email, "password": password}) as answer:
        body = await answer.json(content_type=None)
        if answer.status != 200:
            raise WrongAnswer(f"login answered {answer.status}: {body}")
        return str(body["data"]["token"])


def _check(kind: str, status: int, body: Any, expect_full: bool) -> None:
    """A 200 with a page as full as the total allows, newest first."""
    if status != 200:
        raise WrongAnswer(f"{kind}: {status} {body}")
    data = body["data"]
    messages, total = data["messages"], data["pagination"]["total"]
    wanted = LIMIT if expect_full else min(LIMIT, total)
    if len(messages) != wanted:
        raise WrongAnswer(f"{kind}: {len(messages)} messages, expected {wanted} (total {total})")
    ids = [m["id"] for m in messages]
    if ids != sorted(ids, reverse=True):
        raise WrongAnswer(f"{kind}: not newest first")


async def measure_history(
    base_url: str,
    email: str,
    password: str,
    chat_id: str,
    cursor_id: str,
    search_term: str,
    requests: int = 500,
    warmup: int = 50,
) -> dict[str, dict[str, float]]:
    """Log in, then time `requests` answers of each kind (after `warmup` untimed ones).

    Returns, per kind (`newest`, `deep`, `search`), `p50`, `p99` and `max` in
    milliseconds. A search must find at least one message, and every answer must
    hold as many messages as `limit` and the total allow.
    """
    base_url = base_url.rstrip("/")
    queries: dict[str, dict[str, str]] = {
        "newest": {"limit": str(LIMIT)},
        "deep": {"before": cursor_id, "limit": str(LIMIT)},
        "search": {"search": search_term, "limit": str(LIMIT)},
    }
    samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        token = await _login(session, base_url, email, password)
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{base_url}/api/v1/messages/{chat_id}"
        for n in range(warmup + requests):
            for kind in KINDS:
                started = time.perf_counter()
                async with session.get(url, params=queries[kind], headers=headers) as answer:
                    raw = await answer.read()
                    elapsed = time.perf_counter() - started
                    status = answer.status
                body = json.loads(raw)
                _check(kind, status, body, expect_full=kind != "search")
                if kind == "search" and not body["data"]["messages"]:
                    raise WrongAnswer(f"search: nothing matches {search_term!r}")
                if n >= warmup:
                    samples[kind].append(elapsed)
    return {kind: Summary.of(values).as_dict() for kind, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.loadtest.history", description=__doc__.split("\n\n")[0])
    for name in ("base_url", "email", "password", "chat_id", "cursor_id", "search_term"):
        parser.add_argument(name)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print the figures as one line of JSON")
    args = vars(parser.parse_args(argv))
    as_json = args.pop("json")
    result = asyncio.run(measure_history(**args))
    if as_json:
        print(json.dumps(result))
        return 0
    for kind, figures in result.items():
        print(f"{kind:7} p50 {figures['p50']:.2f} ms  p99 {figures['p99']:.2f} ms  max {figures['max']:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
