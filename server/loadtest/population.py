"""The load test's users and chats, made over the server's own REST API.

Every run gets a fresh random tag in its usernames and emails, so runs against
the same server never collide and a run's rows are easy to find afterwards.
Users are split into consecutive blocks of `group_size`: pairs become private
chats, larger blocks groups created by their first member.
"""

from __future__ import annotations

import asyncio
import secrets
import string
from dataclasses import dataclass
from typing import Any

import aiohttp

PASSWORD = "Loadtest1"


class SetupFailed(Exception):
    """The server refused a registration or a chat; the load test cannot start."""


@dataclass(frozen=True, slots=True)
class Member:
    index: int
    user_id: str
    token: str
    chat: int  # index into Population.chat_ids


@dataclass(frozen=True, slots=True)
class Population:
    tag: str
    users: list[Member]
    chat_ids: list[str]
    group_size: int


def new_tag() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(6))


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.post(url, json=body, headers=headers) as response:
        answer = await response.json(content_type=None)
        if response.status not in (200, 201) or not isinstance(answer, dict) or not answer.get("success"):
            raise SetupFailed(f"POST {url} answered {response.status}: {answer}")
        return answer["data"]


async def populate(
    session: aiohttp.ClientSession, base_url: str, users: int, group_size: int, concurrency: int = 16
) -> Population:
    """Register `users` users and put each block of `group_size` in one chat."""
    if group_size < 2 or users < group_size or users % group_size:
        raise SetupFailed(f"{users} users do not split into chats of {group_size}")
    api = base_url.rstrip("/") + "/api/v1"
    tag = new_tag()
    gate = asyncio.Semaphore(concurrency)

    async def register(index: int) -> tuple[str, str]:
        name = f"lt{tag}{index}"
        async with gate:
            body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
            data = await _post(session, f"{api}/auth/register", body)
        return data["user"]["id"], data["token"]

    accounts = await asyncio.gather(*(register(i) for i in range(users)))

    async def open_chat(block: int) -> str:
        first, *others = accounts[block * group_size : (block + 1) * group_size]
        other_ids = [user_id for user_id, _ in others]
        async with gate:
            if group_size == 2:
                chat = await _post(session, f"{api}/chats", {"type": "private", "participants": other_ids}, first[1])
            else:
                body = {"name": f"load {tag} {block}", "participants": other_ids}
                chat = await _post(session, f"{api}/groups", body, first[1])
        return chat["id"]

    chat_ids = list(await asyncio.gather(*(open_chat(b) for b in range(users // group_size))))
    members = [Member(i, user_id, token, i // group_size) for i, (user_id, token) in enumerate(accounts)]
    return Population(tag, members, chat_ids, group_size)
