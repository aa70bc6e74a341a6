"""Debian's Chromium through Playwright, shared by every browser test (never a downloaded one)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("HAAO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def skip_or_fail(reason: str) -> None:
    """Skip a browser test when a part is missing, unless HAAO_REQUIRE_BROWSER=1 (CI)."""
    if os.environ.get("HAAO_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (HAAO_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@contextmanager
def launched_chromium(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A headless Chromium; reuses pytest-playwright's Playwright, as only one may run."""
    if not Path(CHROMIUM).exists():
        skip_or_fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    own = None
    try:
        pw = request.getfixturevalue("playwright")
    except pytest.FixtureLookupError:
        from playwright.sync_api import sync_playwright

        own = pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    try:
        yield browser
    finally:
        browser.close()
        if own is not None:
            own.stop()


def signed_in(page: Any, live_server: Any, user: Any) -> None:
    """Give the page's browser context a session of `user` on the live server."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME,
                               "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                               "url": live_server.url}])


# Stands in for static/js/live.js's socket: pages subscribe to it, and a test drives the
# "stream" by calling the recorded subscriptions' handlers (window.__live.subs).
LIVE_STUB = """
(() => {
  const live = { subs: [], subscribe(path, options) {
    live.subs.push({ path, options }); options.onStatus && options.onStatus("live");
    return { close() {} }; } };
  window.__live = live;
  let haao;
  Object.defineProperty(window, "HAAO", { configurable: true,
    get() { return haao; },
    set(value) { haao = value; Object.defineProperty(haao, "live", { value: live }); } });
})();
"""
