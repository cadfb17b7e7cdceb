"""axe-core on every page, on a desktop and on a phone: the dashboard's pages and /docs.

A real `thotbot serve` and the system Chromium, as in test_browser.py. axe-core (the engine behind
Lighthouse's accessibility audit) comes from the axe-playwright-python package, read from disk and
run in the page: nothing is fetched. A violation of any rule, at any impact, fails the test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.dashboard.browser import DESKTOP, PASSWORD, PHONE, SCREENSHOTS, create_key
from tests.live import LiveServer, sqlite_server
from thotbot.core.dates import utcnow

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
DOCS_PAGES = [
    "",
    "reference",
    *(p.stem.lower().replace("_", "-") for p in sorted((ROOT / "docs").glob("*.md"))),
]
VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}
#: Rules axe leaves off unless asked ("experimental") that Lighthouse's accessibility audit runs:
#: a data cell of a large table without a header (a documentation table whose first column names
#: the rows), a table faking its caption, a control whose name does not contain its visible text.
LIGHTHOUSE_RULES = {
    rule: {"enabled": True} for rule in ("td-has-header", "table-fake-caption", "label-content-name-mismatch")
}


def axe_source() -> str:
    import axe_playwright_python

    return (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with sqlite_server(tmp_path_factory.mktemp("a11y"), public_url=True) as live:
        yield live


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def context(viewport: str, browser: Browser, server: LiveServer) -> Iterator[BrowserContext]:
    phone = viewport == "phone"
    context = browser.new_context(
        base_url=server.public_url,
        viewport=VIEWPORTS[viewport],  # type: ignore[arg-type]
        is_mobile=phone,
        has_touch=phone,
    )
    context.set_default_timeout(15_000)
    yield context
    context.close()


class Audit:
    """Runs axe on pages and keeps what it found, to report every page's violations at once."""

    def __init__(self, page: Page, viewport: str) -> None:
        self.page = page
        self.viewport = viewport
        self.source = axe_source()
        self.violations: dict[str, list[str]] = {}
        self.incomplete: dict[str, list[dict[str, Any]]] = {}

    def check(self, name: str, *, full_page: bool = True) -> None:
        if not self.page.evaluate("typeof window.axe !== 'undefined'"):
            # Evaluated through the DevTools protocol: the pages' CSP allows no inline script.
            self.page.evaluate(self.source)
        results = self.page.evaluate(
            "rules => axe.run(document, {resultTypes: ['violations', 'incomplete'], rules})"
            ".then(r => ({violations: r.violations, incomplete: r.incomplete}))",
            LIGHTHOUSE_RULES,
        )
        found = [
            f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}" for v in results["violations"]
        ]
        if found:
            self.violations[name] = found
        self.incomplete[name] = results["incomplete"]
        self.page.screenshot(path=SCREENSHOTS / f"a11y-{self.viewport}-{name}.png", full_page=full_page)

    def visit(self, path: str, name: str | None = None) -> None:
        self.page.goto(path)
        self.check(name or path.strip("/").replace("/", "-"))


def test_the_dashboard_pages(context: BrowserContext, viewport: str, server: LiveServer) -> None:
    page = context.new_page()
    audit = Audit(page, viewport)
    for path in ("/login", "/signup", "/forgot-password"):
        audit.visit(path)

    email = f"a11y-{audit.viewport}@example.com"
    page.goto("/signup")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    # The overview of an account with no key shows how to call the API: a curl command in a <pre>
    # wider than a phone, which must then be focusable and named.
    audit.check("dashboard-new-account")
    links = re.findall(r"http://\S+/verify-account\?token=[\w-]+", server.log_text())
    page.goto(links[-1])
    audit.check("verify-account")
    page.get_by_role("button", name="Confirm my email address").click()
    expect(page).to_have_url(re.compile(r"/dashboard/api-keys$"))
    audit.check("api-keys-empty")
    audit.visit("/dashboard/api-keys/new")

    raw = create_key(page, "laptop")
    audit.check("key-created")
    # Requests made with the key, one refused: its page then lists them and groups the error.
    for path in ("/v1/version", "/v1/keys/key_0000000000000000/requests"):
        httpx.get(server.url + path, headers={"Authorization": f"Bearer {raw}"}, timeout=10)
    # The shown key's box is a named group; axe has nothing about it left to review by hand.
    expect(page.get_by_role("group", name=re.compile("^API key"))).to_contain_text("thot_ak_")
    flagged = [
        n for r in audit.incomplete["key-created"] for n in r["nodes"] if "#new-key" in str(n["target"])
    ]
    assert not flagged, flagged

    # A key that expires within 7 days: its "Expires in 3 days" (or 2) badge, and the roll notice on its page.
    page.goto("/dashboard/api-keys")
    page.get_by_role("button", name="Create New Key").click()
    page.get_by_label("Name").fill("deploy bot")
    page.get_by_label("On a date", exact=True).check()
    page.locator("#expiry_date").fill((utcnow() + timedelta(days=2)).date().isoformat())
    page.get_by_role("button", name="Create key").click()
    page.goto("/dashboard/api-keys")
    expect(page.locator(".badge-expiring")).to_have_text(re.compile(r"^Expires in [23] days$"))
    audit.check("api-keys")
    page.get_by_role("link", name="Manage deploy bot").click()
    expect(page.get_by_role("link", name="Roll this key")).to_be_visible()
    # The key used above: its page lists its requests, written about every second, within a few.
    page.goto("/dashboard/api-keys")
    page.get_by_role("link", name="Manage laptop").click()
    for _ in range(50):
        if page.locator("table.errors").count():
            break
        page.wait_for_timeout(200)
        page.reload()
    expect(page.locator("table.requests tbody tr")).to_have_count(2)
    audit.check("key-detail")
    page.goto("/dashboard/api-keys")
    page.get_by_role("link", name="Revoke").first.click()
    audit.check("key-revoke")
    audit.visit("/dashboard/security")
    audit.visit("/dashboard")
    audit.visit("/dashboard/no-such-page", "not-found")
    assert not audit.violations, audit.violations


@pytest.mark.parametrize("name", DOCS_PAGES, ids=lambda n: n or "index")
def test_the_docs_pages(context: BrowserContext, viewport: str, name: str) -> None:
    page = context.new_page()
    audit = Audit(page, viewport)
    response = page.goto(f"/docs/{name}" if name else "/docs")
    assert response is not None
    assert response.status == 200
    # The first screen only: a whole long page is a picture of tens of megapixels.
    audit.check(f"docs-{name or 'index'}", full_page=False)
    if viewport == "phone":
        # Wide tables and code scroll inside their frame, never the page.
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert not audit.violations, audit.violations


def test_the_docs_404_page(context: BrowserContext, viewport: str) -> None:
    audit = Audit(context.new_page(), viewport)
    audit.visit("/docs/no-such-page", "docs-not-found")
    assert not audit.violations, audit.violations
