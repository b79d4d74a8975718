"""Password hashing with bcrypt, always off the event loop.

bcrypt takes about a quarter of a second at cost 12, so it runs in a small
thread pool (bcrypt releases the GIL): one login never stalls other sockets.
bcrypt reads at most 72 bytes and bcrypt 5 raises beyond that (64 Chinese
characters are 192 bytes in UTF-8), so the password is first reduced to a
SHA-256 digest in base64 (44 bytes); every character counts and none is cut.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from concurrent.futures import ThreadPoolExecutor

import bcrypt


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


class PasswordHasher:
    def __init__(self, rounds: int, threads: int = 2) -> None:
        self.rounds = rounds
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bcrypt")
        # compared against when the account does not exist, so both cases cost the same
        self._dummy = bcrypt.hashpw(_prehash("not a password"), bcrypt.gensalt(rounds))

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        salt = bcrypt.gensalt(self.rounds)
        hashed = await loop.run_in_executor(self._pool, bcrypt.hashpw, _prehash(password), salt)
        return hashed.decode("ascii")

    async def verify(self, password: str, hashed: str | None) -> bool:
        """Constant work whether or not there is a hash to check against."""
        loop = asyncio.get_running_loop()
        target = hashed.encode("ascii") if hashed else self._dummy
        ok = await loop.run_in_executor(self._pool, bcrypt.checkpw, _prehash(password), target)
        return ok and hashed is not None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
