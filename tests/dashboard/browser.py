"""What the browser tests share: the system Chromium, where screenshots go, page sizes."""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Page

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "DESKTOP", "KEY_RE", "PASSWORD", "PHONE", "SCREENSHOTS", "create_key"]

ROOT = Path(__file__).resolve().parents[2]
# Read at import: the autouse fixture in tests/conftest.py clears THOTBOT_* before each test.
SCREENSHOTS = Path(os.environ.get("THOTBOT_SCREENSHOTS") or ROOT / "var" / "screenshots").resolve()
CHROMIUM = "/usr/bin/chromium"
# No background networking: this machine has no network, and Chromium's attempts would fail noisily.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KEY_RE = re.compile("thot" + r"_ak_[0-9a-f]{96}")
PASSWORD = "violet hammock seventeen"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def create_key(page: Page, name: str, *, access: str = "Full access") -> str:
    """Create a key on the API keys page of a signed-in, confirmed account: the key, shown once."""
    page.goto("/dashboard/api-keys")
    page.get_by_role("button", name="Create New Key").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label(access).check()
    page.get_by_role("button", name="Create key").click()
    raw = page.locator("#new-key").inner_text().strip()
    assert KEY_RE.fullmatch(raw)
    return raw
