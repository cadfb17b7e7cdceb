"""What the browser tests share: the system Chromium, where screenshots go, page sizes."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "DESKTOP", "KEY_RE", "PASSWORD", "PHONE", "SCREENSHOTS"]

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
