"""The domain services of the app, built in one cleanup context and kept under `SERVICES`.

They open after the store and Redis (they use both) and before the sockets'
namespaces are registered (`server.app.sockets_context`), and close in reverse:
the sockets say goodbye first, then the ring-timeout loop and presence stop, then
the password hasher's threads. State several processes must share (login limits,
budgets, presence, live calls) lives in Redis when `app.get(REDIS)` is a client,
in this process when it is None (no `redis.url`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis

from handlers.gochat.hub import WsHub
from handlers.sio.notifier import SocketNotifier
from models.auth import AuthService, LoginPolicy
from models.calls import CallService
from models.chats import ChatService
from models.live_calls import MemoryLiveCalls, RedisLiveCalls
from models.mail import Mailer
from models.messages import MessageService
from models.notifier import Notifier
from models.passwords import PasswordHasher
from models.presence import PresenceService
from models.ratelimit import Budgets, RateLimiter, RedisBudgets, RedisRateLimiter
from models.services import Services
from models.store.base import Store
from models.tokens import TokenSigner, load_or_create_secret
from models.uploads import UploadService
from models.users import UserService
from server.config import Config
from server.keys import CONFIG, HUB, PROCESS_ID, REDIS, SERVICES, SIO, STORE

log = logging.getLogger(__name__)


def auth_service(
    config: Config, store: Store, redis: Redis | None, notifier: Notifier, hasher: PasswordHasher
) -> AuthService:
    """Tokens signed with the configured secret (or one generated and kept in the data folder), login limits, mail."""
    secret, generated = load_or_create_secret(config.auth.jwt_secret, config.data_path)
    if generated:
        log.warning(
            "no auth.jwt_secret configured: using one generated in %s; production must set its own",
            config.data_path / "jwt_secret",
        )
    mail = config.mail
    return AuthService(
        store=store,
        signer=TokenSigner(secret, config.auth.access_token_ttl, config.auth.refresh_token_ttl),
        hasher=hasher,
        limiter=RedisRateLimiter(redis, config.redis.prefix) if redis is not None else RateLimiter(),
        mailer=Mailer(
            mail.sender,
            config.in_data_dir(mail.outbox_dir),
            mail.smtp_host,
            mail.smtp_port,
            mail.smtp_username,
            mail.smtp_password,
            mail.smtp_starttls,
        ),
        notifier=notifier,
        policy=LoginPolicy(
            config.auth.login_failures_per_account,
            config.auth.login_failures_per_address,
            config.auth.login_failure_window,
        ),
        reset_ttl=config.auth.reset_token_ttl,
        reset_url=config.mail.reset_url,
    )


async def services_context(app: web.Application) -> AsyncIterator[None]:
    """Every domain service, wired to the store, to Redis and to Socket.IO through the notifier."""
    config, store, redis = app[CONFIG], app[STORE], app.get(REDIS)
    notifier = SocketNotifier(app[SIO])
    hasher = PasswordHasher(config.auth.bcrypt_rounds)
    auth = auth_service(config, store, redis, notifier, hasher)
    prefix = config.redis.prefix  # every key of this deployment starts with it (`redis.deployment`)
    presence = PresenceService(store, notifier, config.presence.grace_period, redis, app[PROCESS_ID], prefix=prefix)
    # before the services that hook into it (calls end when a user's last socket closes) exist, as always
    await presence.start()  # no-op without Redis; keeps retrying while Redis is away
    rates = config.limits.budgets()
    budgets = RedisBudgets(redis, rates, prefix) if redis is not None else Budgets(rates)
    chats = ChatService(store, presence, notifier)
    live = RedisLiveCalls(redis, prefix) if redis is not None else MemoryLiveCalls()
    calls = CallService(store, chats, presence, notifier, config.calls.ring_timeout, live=live)
    await calls.start_background()
    messages = MessageService(store, chats, notifier, budgets)
    app[SERVICES] = Services(
        auth=auth,
        presence=presence,
        users=UserService(store, auth, presence),
        chats=chats,
        messages=messages,
        calls=calls,
        uploads=UploadService(store, config.in_data_dir(config.uploads.dir), config.uploads.max_size, budgets),
    )
    hub = WsHub(messages.reached)  # the plain WebSocket door's connections get every notifier call too
    notifier.doors.append(hub)
    app[HUB] = hub
    yield
    await hub.stop()
    await calls.close()
    await presence.close()
    hasher.close()
