"""Prints where the browser tests left their screenshots, at the end of the run."""

from __future__ import annotations

from pathlib import Path

import pytest

SCREENSHOTS_WRITTEN = pytest.StashKey[Path]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    path = config.stash.get(SCREENSHOTS_WRITTEN, None)
    if path is not None:
        terminalreporter.write_sep("-", "dashboard screenshots")
        terminalreporter.write_line(f"dashboard screenshots: {path}")
