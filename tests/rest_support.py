"""Helpers shared by the REST test files: a server on a custom config, raw answers with headers."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from server.config import Config
from tests.conftest import Api, Server, start_server


@dataclass
class Answer:
    """One REST answer with its headers (the `api` fixture only gives status and body)."""

    status: int
    body: Any
    headers: Any


async def raw(session: aiohttp.ClientSession, method: str, url: str, token: str | None = None, **kwargs: Any) -> Answer:
    headers = dict(kwargs.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with session.request(method, url, headers=headers, **kwargs) as response:
        return Answer(response.status, await response.json(content_type=None), response.headers)


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[tuple[Server, Api]]:
    """A server on `config` (for settings a test changes) and a client bound to it."""
    srv = await start_server(config)
    try:
        async with aiohttp.ClientSession() as session:
            yield srv, Api(session, srv.api)
    finally:
        await srv.runner.cleanup()


def assert_error(status: int, body: Any, expected_status: int, code: str) -> None:
    """The failure envelope of the contract, with the expected status and code."""
    assert status == expected_status, body
    assert body["success"] is False, body
    assert isinstance(body["message"], str) and body["message"], body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"], body


def form(
    content: bytes | None, filename: str = "pic.png", content_type: str = "image/png", purpose: str | None = None
) -> aiohttp.FormData:
    """A multipart upload body: `purpose` first when given, then `file` (None: no file part)."""
    data = aiohttp.FormData(default_to_multipart=True)
    if purpose is not None:
        data.add_field("purpose", purpose)
    if content is not None:
        data.add_field("file", io.BytesIO(content), filename=filename, content_type=content_type)
    return data
