"""The browser tests' Chromium, and where they left their screenshots, printed at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from tests.dashboard.browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS
from tests.services import missing_service

SCREENSHOTS_WRITTEN = pytest.StashKey[Path]()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        missing_service(f"Chromium is not installed at {CHROMIUM}")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright, pytestconfig: pytest.Config) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pytestconfig.stash[SCREENSHOTS_WRITTEN] = SCREENSHOTS
    yield browser
    browser.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    # Under pytest-xdist the browsers ran in the workers: their tests' reports say so here.
    reports = [r for outcome in ("passed", "failed") for r in terminalreporter.stats.get(outcome, [])]
    ran = any("browser" in getattr(r, "keywords", {}) and r.when == "call" for r in reports)
    path = config.stash.get(SCREENSHOTS_WRITTEN, SCREENSHOTS if ran else None)
    if path is not None:
        terminalreporter.write_sep("-", "dashboard screenshots")
        terminalreporter.write_line(f"dashboard screenshots: {path}")
