"""The dashboard end to end: a real server (thotbot serve), the system Chromium through Playwright.

Screenshots of every page go to $THOTBOT_SCREENSHOTS (default var/screenshots under the repository);
the path is printed at the end of the run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from playwright.sync_api import Error as PlaywrightError

from tests.dashboard.browser import DESKTOP, KEY_RE, PASSWORD, PHONE, SCREENSHOTS
from tests.dashboard.browser import create_key as create_shown_key
from tests.live import start_server

pytestmark = pytest.mark.browser


@dataclass
class Server:
    url: str
    api: str
    database: Path
    log: Path
    #: Every key the tests saw, to check afterwards that none leaked into the database or logs.
    seen_keys: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("browser")
    database = workdir / "thotbot.db"
    live = start_server(workdir, {"THOTBOT_DATABASE_URL": f"sqlite:///{database}"}, public_url=True)
    try:
        yield Server(live.public_url, live.url, database, live.log)
    finally:
        live.stop()


@pytest.fixture
def context(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=server.url, viewport=DESKTOP)  # type: ignore[arg-type]
    context.set_default_timeout(15_000)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    yield context
    context.close()


def shot(page: Page, name: str, *, full_page: bool = True) -> None:
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=full_page)


def field_error(page: Page, name: str) -> str:
    return page.locator(f"#{name}-error").inner_text()


def sign_up(page: Page, server: Server, email: str) -> None:
    page.goto("/signup")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    confirm_email(page, server)
    page.goto("/dashboard")


def confirm_email(page: Page, server: Server) -> None:
    """Follow the sign-up's confirmation link, as mailed (logged: this server has no SMTP)."""
    links = re.findall(r"http://\S+/verify-account\?token=[\w-]+", server.log.read_text(errors="replace"))
    assert links, "no confirmation link was mailed"
    page.goto(links[-1])
    page.get_by_role("button", name="Confirm my email address").click()
    expect(page).to_have_url(re.compile(r"/dashboard/api-keys$"))


def create_key(page: Page, server: Server, name: str, *, access: str = "Full access") -> str:
    raw = create_shown_key(page, name, access=access)
    server.seen_keys.append(raw)
    return raw


def api(
    server: Server, method: str, path: str, key: str | None = None, *, cookie: str = ""
) -> httpx.Response:
    headers = {"User-Agent": "thotbot-browser-test/1.0 (tests@example.com)"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if cookie:
        headers["Cookie"] = cookie
    return httpx.request(method, server.api + path, headers=headers, timeout=10)


def history(page: Page, move: Callable[[], object]) -> None:
    """Go back or forward. Chromium never re-posts a form from history silently: it shows its
    own "Confirm Form Resubmission" page (ERR_CACHE_MISS), which holds no key either."""
    try:
        move()
    except PlaywrightError as exc:
        if "ERR_CACHE_MISS" not in str(exc):
            raise
    # The error page replaces the document after the navigation reported failure: wait for it.
    for _ in range(100):
        try:
            page.content()
            return
        except PlaywrightError as exc:
            if "is navigating" not in str(exc):
                raise
        page.wait_for_timeout(100)


def key_id_of(page: Page, hint: str) -> str:
    row = page.locator("tr.key-row", has_text=hint)
    value = row.get_attribute("data-key-id")
    assert value
    return value


def session_cookie(context: BrowserContext) -> dict[str, object]:
    [cookie] = [c for c in context.cookies() if c.get("name") == "thotbot_session"]
    return dict(cookie)


def cookie_names(context: BrowserContext) -> set[str]:
    return {str(c.get("name")) for c in context.cookies()}


@pytest.mark.timeout(300)
def test_key_lifecycle(context: BrowserContext, server: Server) -> None:
    page = context.new_page()

    # Signed out, / leads to the sign-in page: its form's CSRF token is bound to a cookie, and no
    # session exists before sign-in.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("heading", name="Sign in to Thotbot")).to_be_visible()
    shot(page, "01-login")
    assert cookie_names(context) == {"thotbot_csrf"}

    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Email address").fill("Browser.User@Example.com")
    page.get_by_label("Password").fill("password123")
    page.get_by_role("button", name="Create account").click()
    assert "too easy to guess" in field_error(page, "password")
    expect(page.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
    shot(page, "02-signup-error")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    expect(page.get_by_text("browser.user@example.com").first).to_be_visible()
    shot(page, "03-overview-new-account")

    after = session_cookie(context)
    assert after["httpOnly"] is True
    assert after["sameSite"] == "Lax"
    assert after["secure"] is False  # http://localhost; https public URLs get Secure
    confirm_email(page, server)

    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="API Keys").click()
    expect(page.get_by_role("heading", name="No API keys yet")).to_be_visible()
    shot(page, "04-api-keys-empty")

    # Create New Key: name, expiry, access; the key is shown once with a working Copy button.
    page.get_by_role("button", name="Create New Key").click()
    shot(page, "05-create-key-form")
    page.get_by_role("button", name="Create key").click()
    assert "Give the key a name" in field_error(page, "name")
    shot(page, "05-create-key-form-error")
    page.goto("/dashboard/api-keys")
    page.get_by_role("button", name="Create New Key").click()
    page.get_by_label("Name").fill("ci server")
    page.get_by_label("90 days").check()
    page.get_by_label("Full access").check()
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_text("It will not be shown again.")).to_be_visible()
    key = page.locator("#new-key").inner_text().strip()
    assert KEY_RE.fullmatch(key)
    server.seen_keys.append(key)
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#copy-status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == key
    shot(page, "06-key-created")

    assert api(server, "GET", "/v1/version", key).status_code == 200

    # Reloading re-sends the form; its one-time token is spent, so nothing is shown or created.
    page.reload()
    expect(page.get_by_role("heading", name="This key was already shown")).to_be_visible()
    assert key not in page.content()
    shot(page, "07-key-page-reloaded")
    history(page, page.go_back)
    expect(page.get_by_role("heading", name="Create New Key")).to_be_visible()
    assert key not in page.content()
    shot(page, "08-after-going-back")
    history(page, page.go_forward)
    assert key not in page.content()
    shot(page, "08-after-going-forward")

    page.goto("/dashboard/api-keys")
    rows = page.locator("tr.key-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ci server")
    expect(rows.first).to_contain_text("Active")
    assert key not in page.content()
    hint = f"thot_ak_{key[8:12]}…{key[-4:]}"
    expect(rows.first.locator("code.hint")).to_have_text(hint)
    shot(page, "09-api-keys-one-key")

    # Rename.
    rows.first.get_by_role("link", name="Manage").click()
    shot(page, "10-key-detail")
    page.get_by_label("New name").fill("ci runner")
    page.get_by_role("button", name="Rename").click()
    expect(page.get_by_role("status")).to_contain_text("Renamed the key to “ci runner”")
    expect(page.get_by_role("heading", name="ci runner")).to_be_visible()

    # Roll: the old key keeps working for the hour chosen, the new one works at once.
    page.get_by_label("In 1 hour").check()
    page.get_by_role("button", name="Roll key").click()
    expect(page.get_by_role("heading", name="Your replacement key")).to_be_visible()
    new_key = page.locator("#new-key").inner_text().strip()
    assert KEY_RE.fullmatch(new_key)
    assert new_key != key
    server.seen_keys.append(new_key)
    shot(page, "11-key-rolled")
    assert api(server, "GET", "/v1/version", key).status_code == 200
    assert api(server, "GET", "/v1/version", new_key).status_code == 200

    page.get_by_role("link", name="I have copied it").click()
    expect(page.locator("tr.key-row")).to_have_count(2)
    assert new_key not in page.content()
    shot(page, "12-api-keys-after-roll")

    # Revoke the old key, after confirming.
    old_row = page.locator("tr.key-row", has_text=hint)
    old_row.get_by_role("link", name="Revoke").click()
    expect(page.get_by_role("heading", name="Revoke “ci runner”?")).to_be_visible()
    shot(page, "13-revoke-confirm")
    page.get_by_role("button", name="Revoke key").click()
    expect(page.get_by_role("status")).to_contain_text("It no longer works")
    expect(page.locator("tr.key-row", has_text=hint)).to_contain_text("Revoked")
    shot(page, "14-api-keys-after-revoke")
    refused = api(server, "GET", "/v1/version", key)
    assert refused.status_code == 401
    assert refused.json()["code"] == "revoked_api_key"
    assert api(server, "GET", "/v1/version", new_key).status_code == 200

    # A read-only key reads, and is refused anything else.
    read_only = create_key(page, server, "dashboards", access="Read-only")
    shot(page, "15-read-only-key-created")
    page.goto("/dashboard/api-keys")
    read_only_id = key_id_of(page, f"thot_ak_{read_only[8:12]}…{read_only[-4:]}")
    assert api(server, "GET", "/v1/keys", read_only).status_code == 200
    forbidden = api(server, "DELETE", f"/v1/keys/{read_only_id}", read_only)
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in forbidden.headers["www-authenticate"]

    # The session cookie is no API credential.
    cookie = session_cookie(context)
    with_cookie = api(server, "GET", "/v1/me", cookie=f"thotbot_session={cookie['value']}")
    assert with_cookie.status_code == 401
    assert with_cookie.json()["code"] == "session_cookie_not_accepted"

    # A form posted without its CSRF token is refused and changes nothing.
    new_id = key_id_of(page, f"thot_ak_{new_key[8:12]}…{new_key[-4:]}")
    forged = page.request.post(f"/dashboard/api-keys/{new_id}/revoke", form={"confirm": "yes"})
    assert forged.status == 403
    assert api(server, "GET", "/v1/version", new_key).status_code == 200

    # The key's page shows its usage once the server has flushed it (every 2 s): chart, User-Agents.
    curl = {"Authorization": f"Bearer {new_key}", "User-Agent": "curl/8.5.0"}
    assert httpx.get(server.api + "/v1/version", headers=curl, timeout=10).status_code == 200
    page.goto(f"/dashboard/api-keys/{new_id}")
    for _ in range(50):
        if page.locator("tr.agent-row").count() == 2:
            break
        page.wait_for_timeout(200)
        page.reload()
    expect(page.locator("tr.agent-row")).to_have_count(2)
    expect(page.get_by_text("4 requests in the last 30 days")).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(r"^Requests per day"))).to_be_visible()
    expect(page.locator("tr.ua-generic")).to_contain_text("Set a descriptive User-Agent")
    shot(page, "15b-key-usage")
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    shot(page, "phone-05-key-usage")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]

    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Security").click()
    expect(page.get_by_role("heading", name="Active sessions")).to_be_visible()
    log = page.locator("table.log")
    for action in (
        "Account created",
        "API key created",
        "API key renamed",
        "API key rolled",
        "API key revoked",
    ):
        expect(log).to_contain_text(action)
    shot(page, "16-security")

    page.goto("/dashboard")
    shot(page, "17-overview")

    # Sign out, and back in.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("status")).to_have_text("You have signed out.")
    shot(page, "18-signed-out")
    page.goto("/dashboard/api-keys")
    expect(page).to_have_url(re.compile(r"/login\?next=/dashboard/api-keys$"))
    page.get_by_label("Email address").fill("browser.user@example.com")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#password-error")).to_have_text("The email address or password is incorrect.")
    shot(page, "19-sign-in-error")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(re.compile(r"/dashboard/api-keys$"))
    expect(page.locator("tr.key-row")).to_have_count(3)
    for raw in server.seen_keys:
        assert raw not in page.content()
    shot(page, "20-signed-in-again")


def test_phone_layout(browser: Browser, server: Server) -> None:
    context = browser.new_context(base_url=server.url, viewport=PHONE, is_mobile=True, has_touch=True)  # type: ignore[arg-type]
    page = context.new_page()
    sign_up(page, server, "phone@example.com")
    shot(page, "phone-01-overview")
    create_key(page, server, "phone app")
    shot(page, "phone-02-key-created")
    page.goto("/dashboard/api-keys")
    shot(page, "phone-03-api-keys")
    page.goto("/dashboard/security")
    shot(page, "phone-04-security")
    # Nothing is wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    context.close()


def test_without_javascript(browser: Browser, server: Server) -> None:
    context = browser.new_context(base_url=server.url, viewport=DESKTOP, java_script_enabled=False)  # type: ignore[arg-type]
    page = context.new_page()
    sign_up(page, server, "nojs@example.com")
    raw = create_key(page, server, "no script")

    # The Copy button needs a script; without one, a click selects the whole key for Ctrl+C.
    expect(page.get_by_role("button", name="Copy")).to_be_hidden()
    expect(page.locator("#copy-status")).to_contain_text("Click the key to select all of it")
    page.locator("#new-key").click()
    assert page.evaluate("window.getSelection().toString()") == raw
    shot(page, "nojs-01-key-created")
    context.close()


def test_keyboard_focus_is_visible(context: BrowserContext) -> None:
    page = context.new_page()
    page.goto("/login")
    page.keyboard.press("Tab")  # the skip link
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.id")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    shot(page, "focus-01-login")
    assert focused == "email"
    assert outline == "solid"


def test_no_key_reached_the_database_or_the_log(context: BrowserContext, server: Server) -> None:
    """Runs last in this module: every key the browser saw is absent from every file the server wrote.
    Run alone, it first signs up and creates a key itself."""
    if not server.seen_keys:
        page = context.new_page()
        sign_up(page, server, "last.check@example.com")
        create_key(page, server, "checked last")
    assert server.seen_keys
    written = b"".join(path.read_bytes() for path in server.database.parent.iterdir() if path.is_file())
    for raw in server.seen_keys:
        assert raw.encode() not in written
