"""The chat page in a real browser: the system's Chromium driven by Playwright (no download)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.support import LiveServer, make_settings

HAIKU = "claude-haiku-4-5"  # the default here: it thinks, and takes images and PDFs
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_or_skip() -> str:
    """The system's Chromium: ZYRON_CHROMIUM, else the first on PATH; else skip, saying why."""
    named = os.environ.get("ZYRON_CHROMIUM")
    found = named or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if found is None:
        pytest.skip(
            "Chromium is not installed (Debian: apt install chromium); the page tests need it"
        )
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the run; each test gets its own context."""
    executable = chromium_or_skip()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def page_server(
    fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server on SQLite whose Claude models are the fake upstream."""
    settings = make_settings(
        tmp_path_factory.mktemp("zyron-page"),
        anthropic_api_key="sk-ant-test-key-never-logged",
        anthropic_base_url=fake_anthropic.base_url,
        default_model=HAIKU,
    )
    server = LiveServer(settings).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser: Browser, page_server: LiveServer) -> Iterator[Page]:
    """A fresh browser tab (empty storage) on the chat page; fails on any script error."""
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    tab.goto(page_server.url + "/")
    try:
        yield tab
    finally:
        context.close()
    # An error status the page shows on purpose is logged by the browser, not thrown.
    thrown = [e for e in errors if "Failed to load resource" not in e]
    assert not thrown, f"the page had script errors: {thrown}"


def shoot(tab: Page, name: str) -> None:
    """Save a screenshot into ZYRON_SCREENSHOTS (docs/screenshots), when it is set."""
    folder = os.environ.get("ZYRON_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(Path(folder) / f"{name}.png"))
