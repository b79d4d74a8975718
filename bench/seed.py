"""A chat with a long history, written straight into the server's own SQLite database.

Sending a million messages through the API would take an hour; the history
endpoints only care what the rows look like. So the users and the chat go in
through the store's own methods (the schema and its migrations are the real
ones), and the messages through SQL on the store's connection, 50,000 to a
transaction, as `MessageService.send` would have stored them: time-sorted 24-hex
ids, `createdAt` and `updatedAt` the time the id tells, no edits. The store's
triggers keep the chat's last message, count and search index as for any insert.

`python -m bench.seed DATA_DIR [--count N]` seeds `DATA_DIR` and prints what a
load test needs (the login, the chat, a deep cursor, a search term) as JSON.
With `--url mongodb://HOST:PORT/DB` the same history goes into that MongoDB (or
FerretDB) database instead, for comparing the backends: the messages as
`MongoStore.insert_message` would have written them, `insert_many` in batches,
then the chat's summary moved once, as that method's `$max`/`$inc` would have.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.chats import pair_key
from models.clock import id_time, new_id, now_iso
from models.documents import Chat, Member, Message, User
from models.passwords import PasswordHasher
from models.store import create_store
from models.store.base import Store
from models.store.mongo import MongoStore
from models.store.mongo_chats import _message_doc
from models.store.sqlite import SqliteStore
from server.config import load_config

EMAIL = "history.alice@example.com"
OTHER_EMAIL = "history.bob@example.com"
PASSWORD = "Passw0rd-history"
SEARCH_TERM = "quokka"
BATCH = 50_000
MONGO_BATCH = 5_000  # documents per `insert_many`: well under a 48 MB wire message
# `insert_message`'s columns, in its order
_COLUMNS = (
    "id, chat_id, sender_id, content, type, metadata, reply_to, client_id, edited_at, deleted, created_at, updated_at"
)
_VALUES = ", ".join("?" * 12)
STEP_MS = 1_000  # one message a second, ending an hour ago: later sends sort after every seeded one

# Everyday words, and made-up ones from syllables so the text has many distinct
# trigrams (as real chat does) without ever spelling the search term.
_EVERYDAY = (
    "the a to and of you I it is that in we for on my this be have are not with so just at can do what "
    "was but all about me your like get if know will up out now time good one there no they how see "
    "then come think back here today tomorrow tonight later maybe sure thanks okay yes lunch dinner "
    "meeting call train late early home work office weekend coffee movie game photo picture send sent "
    "love great nice cool fine sorry happy birthday party plan trip flight hotel beach rain sunny cold"
)
_WORDS = _EVERYDAY.split()
_SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]


@dataclass(frozen=True, slots=True)
class HistorySeed:
    """What a client needs to read the seeded history."""

    database: str
    chat_id: str
    email: str
    password: str
    user_id: str
    other_user_id: str
    count: int
    cursor_id: str  # 90% of the history back from the newest message: `count // 10` messages are older
    search_term: str
    search_matches: int


def _vocabulary(rng: random.Random, size: int = 3_000) -> list[str]:
    made = {"".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(size)}
    return _WORDS + sorted(made)


def _sentence(rng: random.Random, words: list[str]) -> str:
    text = " ".join(rng.choice(words) for _ in range(rng.randint(2, 14)))
    text = text[0].upper() + text[1:]
    return text + rng.choice((".", "!", "?", "", "", " :)"))


def _rows(chat_id: str, senders: tuple[str, str], count: int, matches: int, seed: int) -> Iterator[tuple[Any, ...]]:
    """Message rows in id order; every `count // matches`-th one mentions the search term."""
    rng = random.Random(seed)
    words = _vocabulary(rng)
    every = max(1, count // max(1, matches))
    start_ms = time.time_ns() // 1_000_000 - 3_600_000 - count * STEP_MS
    counter = rng.getrandbits(47)
    for n in range(count):
        message_id = f"{start_ms + n * STEP_MS:012x}{(counter + n) % (1 << 48):012x}"
        created = id_time(message_id)
        text = _sentence(rng, words)
        if n % every == every - 1:
            term = rng.choice((SEARCH_TERM, SEARCH_TERM.capitalize(), SEARCH_TERM.upper()))
            text = f"{text} {term}{rng.choice(('', 's', '!', ' time'))}"
        sender = senders[rng.random() < 0.5]
        yield (message_id, chat_id, sender, text, "text", None, None, None, None, 0, created, created)


async def seed_history(
    data_dir: Path,
    count: int = 1_000_000,
    *,
    search_matches: int = 300,
    bcrypt_rounds: int = 4,
    seed: int = 1,
    progress: bool = True,
    url: str | None = None,
) -> HistorySeed:
    """Create two users, a private chat between them and `count` messages in it, in `data_dir`'s database.

    `data_dir` is what the server's `data_dir` setting will point at (the
    database is the default `database.path` inside it); with `url`, the
    MongoDB database there is seeded instead. Each call adds a new pair of
    users, so it refuses a database that already has them.
    """
    config = load_config(None, {}).replace(data_dir=str(data_dir))
    if url is not None:
        config = config.replace(database={"backend": "mongodb", "url": url})
        return await _seed_mongo(create_store(config), count, search_matches, bcrypt_rounds, seed, progress)
    store = create_store(config)
    if not isinstance(store, SqliteStore):  # pragma: no cover - the default backend
        raise TypeError("seeding writes SQLite")
    await store.open()
    try:
        alice, bob, chat = await _users_and_chat(store, bcrypt_rounds)
        started = time.perf_counter()
        await store.db.execute("CREATE TEMP TABLE seed_batch AS SELECT * FROM messages WHERE 0")
        cursor_id = last_id = ""
        rows = _rows(chat.id, (alice.id, bob.id), count, search_matches, seed)
        matches = 0
        done = 0
        while done < count:
            batch = [next(rows) for _ in range(min(BATCH, count - done))]
            matches += sum(SEARCH_TERM in row[3].lower() for row in batch)
            if done <= count // 10 < done + len(batch):
                cursor_id = batch[count // 10 - done][0]
            last_id = batch[-1][0]
            async with store.transaction() as db:
                # staged, then moved in one statement: the search index flushes once per
                # statement, so one `INSERT` per row would make a million tiny index segments
                await db.execute("DELETE FROM temp.seed_batch")
                await db.executemany(f"INSERT INTO temp.seed_batch ({_COLUMNS}) VALUES ({_VALUES})", batch)
                await db.execute(
                    f"INSERT INTO messages ({_COLUMNS}) SELECT {_COLUMNS} FROM temp.seed_batch ORDER BY rowid"
                )
            done += len(batch)
            if progress:
                print(
                    f"seeded {done:,}/{count:,} messages in {time.perf_counter() - started:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
        await store.db.execute("DROP TABLE temp.seed_batch")
        if last_id:  # both have read everything: statuses come out `read`, as in a chat people use
            for user_id in (alice.id, bob.id):
                await store.advance_mark(chat.id, user_id, "last_delivered_id", last_id)
                await store.advance_mark(chat.id, user_id, "last_read_id", last_id)
        await store.catch_up_search()  # indexed in bulk, as a running server does
        await store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        await store.close()
    return _seeded(str(store.path), chat, alice, bob, count, cursor_id, matches)


def _seeded(database: str, chat: Chat, alice: User, bob: User, count: int, cursor_id: str, matches: int) -> HistorySeed:
    """What a seeding answers, whichever backend it filled."""
    return HistorySeed(
        database=database,
        chat_id=chat.id,
        email=EMAIL,
        password=PASSWORD,
        user_id=alice.id,
        other_user_id=bob.id,
        count=count,
        cursor_id=cursor_id,
        search_term=SEARCH_TERM,
        search_matches=matches,
    )


async def _users_and_chat(store: Store, bcrypt_rounds: int) -> tuple[User, User, Chat]:
    """The two users and their private chat, through the store's own methods."""
    if await store.get_user_by_email(EMAIL) is not None:
        raise FileExistsError("the database is already seeded")
    hasher = PasswordHasher(bcrypt_rounds, threads=1)
    try:
        password_hash = await hasher.hash(PASSWORD)
    finally:
        hasher.close()
    now = now_iso()
    alice = User(new_id(), EMAIL, "history_alice", password_hash, now, now)
    bob = User(new_id(), OTHER_EMAIL, "history_bob", password_hash, now, now)
    for user in (alice, bob):
        await store.insert_user(user)
    chat = Chat(new_id(), "private", alice.id, now, now, now, pair_key=pair_key(alice.id, bob.id))
    await store.insert_chat(chat, [Member(chat.id, uid, "member", now) for uid in (alice.id, bob.id)])
    return alice, bob, chat


async def _seed_mongo(
    store: Store, count: int, search_matches: int, bcrypt_rounds: int, seed: int, progress: bool
) -> HistorySeed:
    """The same history in MongoDB: `insert_many` of the documents `insert_message` writes, then the chat once."""
    if not isinstance(store, MongoStore):  # pragma: no cover - `url` selects the backend
        raise TypeError("expected a MongoDB store")
    await store.open()
    try:
        alice, bob, chat = await _users_and_chat(store, bcrypt_rounds)
        started = time.perf_counter()
        cursor_id = last_id = last_at = ""
        matches = done = 0
        rows = _rows(chat.id, (alice.id, bob.id), count, search_matches, seed)
        while done < count:
            batch = [next(rows) for _ in range(min(MONGO_BATCH, count - done))]
            matches += sum(SEARCH_TERM in row[3].lower() for row in batch)
            if done <= count // 10 < done + len(batch):
                cursor_id = batch[count // 10 - done][0]
            docs = [
                _message_doc(Message(id_, chat_id, sender, content, kind, created, updated))
                for id_, chat_id, sender, content, kind, _, _, _, _, _, created, updated in batch
            ]
            await store.messages.insert_many(docs, ordered=True)
            last_id, last_at = batch[-1][0], batch[-1][10]
            done += len(batch)
            if progress and (done % 50_000 == 0 or done == count):
                print(f"seeded {done:,}/{count:,} messages in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        if last_id:
            await store.chats.update_one(
                {"_id": chat.id},
                {
                    "$max": {"last_message_id": last_id, "last_key": last_id, "last_activity": last_at},
                    "$inc": {"message_count": count},
                },
            )
            for user_id in (alice.id, bob.id):
                await store.advance_mark(chat.id, user_id, "last_delivered_id", last_id)
                await store.advance_mark(chat.id, user_id, "last_read_id", last_id)
    finally:
        await store.close()
    return _seeded(store.url, chat, alice, bob, count, cursor_id, matches)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.seed", description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="the folder the server's data_dir will point at")
    parser.add_argument("--count", type=int, default=1_000_000, help="messages in the chat")
    parser.add_argument("--matches", type=int, default=300, help="messages that mention the search term")
    parser.add_argument(
        "--url", help="seed this MongoDB database (mongodb://HOST:PORT/DB) instead of DATA_DIR's SQLite"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    seeded = asyncio.run(seed_history(args.data_dir, args.count, search_matches=args.matches, url=args.url))
    print(f"seeded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(json.dumps(dataclasses.asdict(seeded), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
