"""Headless Chromium (Debian's ``chromium`` package) driven by Playwright against a real
server, with every request that would leave the machine blocked and recorded."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Playwright, Route, sync_playwright

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CHROMIUM_NAMES = ("chromium", "chromium-browser")


def find_chromium() -> str | None:
    """The system Chromium: ``$ARGOS_CHROMIUM``, else ``chromium`` on the PATH."""
    if path := os.environ.get("ARGOS_CHROMIUM"):
        return path
    return next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        message = "no chromium on the PATH; run scripts/install-browser.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    browser = playwright.chromium.launch(executable_path=executable)
    yield browser
    browser.close()


@pytest.fixture()
def outside_requests() -> list[str]:
    """URLs the page tried to reach beyond the loopback interface (all blocked)."""
    return []


@pytest.fixture()
def page(browser: Browser, outside_requests: list[str]) -> Iterator[Page]:
    """A fresh page whose requests off the machine are blocked; the test fails if any
    were made."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})

    def guard(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            outside_requests.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()
    assert outside_requests == [], "requests left the machine"
