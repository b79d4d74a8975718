"""Browser tests: Debian's Chromium, driven by Playwright, against the real app on a loopback port.

Chromium is the `chromium` package (`make test` installs it; locally a missing one
skips, under CI it fails, as `require_tool` does). Playwright never downloads a
browser here: it launches /usr/bin/chromium through `executable_path`, headless,
with a fresh empty profile (Playwright makes a new user-data-dir per launch) and
fake camera and microphone for calls.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from handlers.rest import web as rest_web
from server.config import Config
from tests.conftest import Server, require_tool, start_server

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # calls: camera and microphone are Chromium's fake devices, granted without a prompt
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    # WebRTC host candidates on loopback too, so two tabs connect on a machine with no other interface
    "--allow-loopback-in-peer-connection",
]


def playwright_api() -> Any:
    """`playwright.async_api`; a skip locally, a failure under CI when the package is missing."""
    try:
        import playwright.async_api as api
    except ImportError:
        message = "the playwright package is not installed (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must not skip)")
        pytest.skip(message)
    return api


@pytest.fixture
def web_config(config: Config) -> Config:
    """Short timings so the scenario is quick: presence grace, heartbeats, and a 15-s access token
    that the client must refresh in the middle of the run."""
    return config.replace(
        presence={"grace_period": 0.5},
        socketio={"ping_interval": 2, "ping_timeout": 2},
        auth={"access_token_ttl": 15},
    )


@pytest.fixture
async def web_server(web_config: Config) -> AsyncIterator[Server]:
    if not rest_web.BUNDLE.is_file():
        pytest.fail(f"{rest_web.BUNDLE} is missing: run `make web` (npm ci in web/ and copy the bundle)")
    srv = await start_server(web_config)
    yield srv
    await srv.runner.cleanup()


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    """A headless Chromium (Debian's), closed after the test."""
    executable = require_tool("chromium")
    api = playwright_api()
    async with api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()
