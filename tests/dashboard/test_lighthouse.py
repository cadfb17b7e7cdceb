"""Lighthouse on the dashboard's pages and the documentation: accessibility, best practices, SEO.

A real `thotbot serve`, the system Chromium, and Lighthouse from tests/node (installed by
`make test` with `npm ci` from its lock file; nothing is fetched while the test runs). Every audit
of the three categories that scores must score 1 on every page, signed in where the page needs it.
The performance category is left out: its scores are timings, and a test suite holds none
(docs/PERFORMANCE.md measures speed). axe-core, the engine of the accessibility audit, also runs on
every page at two sizes in test_accessibility.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard.browser import CHROMIUM
from tests.dashboard.helpers import csrf_token
from tests.livecli import EMAIL, PASSWORD, Deployment, deploy
from tests.services import missing_service

pytestmark = pytest.mark.browser

NODE_TOOLS = Path(__file__).resolve().parents[1] / "node"
NODE = shutil.which("node")
PUBLIC = ["/login", "/signup", "/docs", "/docs/performance"]
SIGNED_IN = ["/dashboard", "/dashboard/api-keys", "/dashboard/security"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if not Path(CHROMIUM).exists():
        missing_service(f"Chromium is not installed at {CHROMIUM}")
    if NODE is None or not (NODE_TOOLS / "node_modules" / "lighthouse").is_dir():
        missing_service("Lighthouse is not installed: npm ci --prefix tests/node (make test does)")
    site = deploy(tmp_path_factory.mktemp("lighthouse"), {}, public_url=True)
    try:
        yield site
    finally:
        site.stop()


def _signed_in(site: Deployment) -> tuple[str, str]:
    """The deployment's account, with a key, signed in: its session's Cookie header and the key's id."""
    key_id = site.key_id(site.create_key("lighthouse"))
    with httpx.Client(base_url=site.public_url) as client:
        form = client.get("/login").text
        signed_in = client.post(
            "/login", data={"csrf_token": csrf_token(form), "email": EMAIL, "password": PASSWORD}
        )
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == "/dashboard"
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    return cookie, key_id


def _lighthouse(server: Deployment, cookie: str, paths: list[str]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(NODE), str(NODE_TOOLS / "audit.mjs"), server.public_url, cookie, *paths],
        env={**os.environ, "CHROME_PATH": CHROMIUM},
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


# About 8 s a page here (60 s in all), past the suite's 120 s on a machine half as fast.
@pytest.mark.timeout(600)
def test_every_audit_passes_on_every_page(server: Deployment) -> None:
    cookie, key_id = _signed_in(server)
    pages = [
        *_lighthouse(server, "", PUBLIC),
        *_lighthouse(server, cookie, [*SIGNED_IN, f"/dashboard/api-keys/{key_id}"]),
    ]

    assert [page["path"] for page in pages] == [*PUBLIC, *SIGNED_IN, f"/dashboard/api-keys/{key_id}"]
    found = {
        page["path"]: (page["error"], page["scores"], page["failing"])
        for page in pages
        if page["error"] or page["failing"] or set(page["scores"].values()) != {1}
    }
    assert found == {}
    # Each page was audited as itself: a signed-in page was not sent to the sign-in form.
    assert [page["url"] for page in pages] == [server.public_url + page["path"] for page in pages]
    assert {tuple(sorted(page["scores"])) for page in pages} == {("accessibility", "best-practices", "seo")}
