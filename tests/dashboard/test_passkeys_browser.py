"""Passkeys and fresh sign-in end to end: a real server (thotbot serve), the system Chromium through
Playwright, with Chromium's virtual authenticator (CDP WebAuthn domain) standing in for the device.

The relying party is THOTBOT_PUBLIC_URL, http://localhost:PORT: the browser must use that host
name, as WebAuthn refuses IP addresses. Screenshots go to $THOTBOT_SCREENSHOTS (default
var/screenshots under the repository), named passkeys-*.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, expect

from tests.dashboard.browser import DESKTOP, KEY_RE, PASSWORD, PHONE, SCREENSHOTS, create_key
from tests.live import start_server
from tests.smtp import Inbox, smtp_server
from thotbot.config import load_settings
from thotbot.core.dates import utcnow
from thotbot.services import Services, build_services

pytestmark = pytest.mark.browser


@dataclass
class Server:
    url: str
    database_url: str
    workdir: Path
    log: Path
    inbox: Inbox
    seen_keys: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("passkeys")
    database_url = f"sqlite:///{workdir / 'thotbot.db'}"
    with smtp_server() as inbox:
        settings = {"THOTBOT_DATABASE_URL": database_url, "THOTBOT_SMTP_URL": inbox.url}
        live = start_server(workdir, settings, public_url=True)
        try:
            yield Server(live.public_url, database_url, workdir, live.log, inbox)
        finally:
            live.stop()


@pytest.fixture(scope="module")
def database(server: Server) -> Iterator[Services]:
    """The server's own database, to turn its sessions' clocks back (never by sleeping)."""
    services = build_services(load_settings(database_url=server.database_url))
    yield services
    services.engine.dispose()


@pytest.fixture
def context(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=server.url, viewport=DESKTOP)  # type: ignore[arg-type]
    context.set_default_timeout(15_000)
    yield context
    context.close()


@dataclass
class Authenticator:
    """Chromium's virtual authenticator: a platform authenticator with user verification."""

    cdp: CDPSession
    id: str

    def credentials(self) -> list[dict[str, Any]]:
        answer = self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.id})
        credentials: list[dict[str, Any]] = answer["credentials"]
        return credentials


def add_authenticator(context: BrowserContext, page: Page) -> Authenticator:
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    answer = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return Authenticator(cdp, answer["authenticatorId"])


def shot(page: Page, name: str) -> None:
    page.screenshot(path=SCREENSHOTS / f"passkeys-{name}.png", full_page=True)


def sign_up(page: Page, email: str) -> None:
    page.goto("/signup")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))


def confirm_email(page: Page, server: Server, email: str) -> None:
    """Follow the sign-up's confirmation link from the mail, so the account may create keys."""
    subject = "[Thotbot] Confirm your email address"
    deadline = time.monotonic() + 15
    while not (mails := [m for m in server.inbox.to(email) if m.message["subject"] == subject]):
        assert time.monotonic() < deadline, "no confirmation mail"
        server.inbox.wait_for(len(server.inbox.received) + 1, timeout=0.5)
    page.goto(mails[-1].link().replace(server.url, ""))
    page.get_by_role("button", name="Confirm my email address").click()
    expect(page).to_have_url(re.compile(r"/dashboard/api-keys$"))
    page.goto("/dashboard")


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))


def go_stale(context: BrowserContext, database: Services) -> None:
    """Turn the browser session's last sign-in back 11 minutes, past the fresh sign-in window."""
    [cookie] = [c for c in context.cookies() if c.get("name") == "thotbot_session"]
    session = database.web_sessions.find_by_token(str(cookie.get("value")))
    assert session is not None
    assert session.account_id is not None
    database.web_sessions.reauthenticate(session.id, now=utcnow() - timedelta(minutes=11))


def passkey_rows(page: Page) -> Any:
    return page.locator("tr.passkey-row")


@pytest.mark.timeout(300)
def test_passkey_lifecycle(context: BrowserContext, server: Server, database: Services) -> None:
    page = context.new_page()
    authenticator = add_authenticator(context, page)
    sign_up(page, "passkey.user@example.com")
    confirm_email(page, server, "passkey.user@example.com")

    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Security").click()
    expect(page.get_by_text("You have no passkeys yet.")).to_be_visible()
    shot(page, "01-security-no-passkey")

    # Add a passkey: the browser creates a discoverable credential on the authenticator.
    page.get_by_label("Name of the new passkey").fill("Test laptop")
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.get_by_role("status").first).to_have_text(
        "Passkey “Test laptop” added. You can sign in with it, without your password."
    )
    expect(passkey_rows(page)).to_have_count(1)
    expect(passkey_rows(page).first).to_contain_text("Test laptop")
    expect(passkey_rows(page).first).to_contain_text("Never used")
    [credential] = authenticator.credentials()
    assert credential["isResidentCredential"] is True
    expect(page.locator("table.log")).to_contain_text("Passkey added")
    shot(page, "02-passkey-added")
    subject = "[Thotbot] A passkey was added to your account"
    deadline = time.monotonic() + 15  # the sign-up's confirmation link was mailed first
    while not [m for m in server.inbox.received if m.message["subject"] == subject]:
        assert time.monotonic() < deadline, [m.message["subject"] for m in server.inbox.received]
        server.inbox.wait_for(len(server.inbox.received) + 1, timeout=0.5)
    assert len([m for m in server.inbox.received if m.message["subject"] == subject]) == 1

    # Sign out, then in with the passkey alone: no email address typed.
    sign_out(page)
    shot(page, "03-login")
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    expect(page.get_by_text("passkey.user@example.com").first).to_be_visible()
    page.goto("/dashboard/security")
    expect(passkey_rows(page).first).not_to_contain_text("Never used")
    expect(page.locator("table.log")).to_contain_text("Signed in")
    shot(page, "04-signed-in-with-passkey")

    # Eleven minutes later, creating a key first asks for a proof; a passkey gives it, and the
    # key is created with what was typed in the form.
    go_stale(context, database)
    page.goto("/dashboard/api-keys/new")
    page.get_by_label("Name").fill("after a fresh sign-in")
    page.get_by_label("Read-only").check()
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    expect(page.get_by_text("To create the API key “after a fresh sign-in”")).to_be_visible()
    shot(page, "05-confirm-it-is-you")
    page.get_by_role("button", name="Use a passkey").click()
    expect(page.get_by_role("heading", name="Your new API key")).to_be_visible()
    key = page.locator("#new-key").inner_text().strip()
    assert KEY_RE.fullmatch(key)
    server.seen_keys.append(key)
    expect(page.get_by_text("Read-only (GET and HEAD)")).to_be_visible()
    shot(page, "06-key-created-after-passkey")

    # Eleven minutes later again, removing the passkey asks too; the password does it this time.
    go_stale(context, database)
    page.goto("/dashboard/security")
    expect(page.get_by_text("first ask for your password or a passkey")).to_be_visible()
    passkey_rows(page).first.get_by_role("button", name="Remove Test laptop").click()
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Confirm and continue").click()
    expect(page.locator("#sudo_password-error")).to_have_text("The password is incorrect.")
    shot(page, "07-confirm-wrong-password")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm and continue").click()
    expect(page.get_by_role("status").first).to_contain_text("Removed the passkey “Test laptop”")
    expect(passkey_rows(page)).to_have_count(0)
    shot(page, "08-passkey-removed")

    # The authenticator still holds the credential, but Thotbot no longer accepts it.
    sign_out(page)
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page.locator("#passkey-status")).to_contain_text("not registered with Thotbot")
    expect(page).to_have_url(re.compile(r"/login$"))
    shot(page, "09-passkey-refused")
    page.goto("/dashboard/security")
    expect(page).to_have_url(re.compile(r"/login\?next=/dashboard/security$"))


@pytest.mark.timeout(300)
def test_email_change_through_the_mailed_link(context: BrowserContext, server: Server) -> None:
    page = context.new_page()
    sign_up(page, "mail.before@example.com")
    page.goto("/dashboard/security")
    page.get_by_label("New email address").fill("mail.after@example.com")
    page.get_by_role("button", name="Send verification link").click()
    expect(page.get_by_role("status").first).to_contain_text("Check your inbox at mail.after@example.com")
    expect(page.get_by_text("Waiting for confirmation: mail.after@example.com")).to_be_visible()
    shot(page, "10-email-pending")

    deadline = time.monotonic() + 10
    while not server.inbox.to("mail.after@example.com") and time.monotonic() < deadline:
        server.inbox.wait_for(len(server.inbox.received) + 1, timeout=0.5)
    [mail] = server.inbox.to("mail.after@example.com")
    link = mail.link()
    assert link.startswith(f"{server.url}/verify-email?token=")
    page.goto(link)
    expect(page.get_by_role("heading", name="Confirm your new email address")).to_be_visible()
    shot(page, "11-verify-email")
    page.get_by_role("button", name="Confirm the new email address").click()
    expect(page.get_by_role("status").first).to_have_text("Your email address is now mail.after@example.com.")
    expect(page.locator(".current-email")).to_have_text("mail.after@example.com")
    shot(page, "12-email-changed")

    page.goto(link)
    page.get_by_role("button", name="Confirm the new email address").click()
    expect(page.get_by_role("heading", name="This link no longer works")).to_be_visible()
    shot(page, "13-link-used")


def test_without_javascript_passkeys_say_what_they_need(browser: Browser, server: Server) -> None:
    context = browser.new_context(base_url=server.url, viewport=DESKTOP, java_script_enabled=False)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto("/login")
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page.locator("#passkey-status")).to_contain_text("Signing in with a passkey needs JavaScript")
    shot(page, "14-nojs-login")

    sign_up(page, "no.script@example.com")
    page.goto("/dashboard/security")
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.get_by_text("Passkeys need JavaScript.")).to_be_visible()
    shot(page, "15-nojs-add-passkey")

    # Everything else works: the password changes with a plain form.
    page.goto("/dashboard/security")
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password").fill("lamp orbit walrus tea")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status").first).to_contain_text("Password changed.")
    context.close()


def test_security_page_on_a_phone(browser: Browser, server: Server) -> None:
    context = browser.new_context(base_url=server.url, viewport=PHONE, is_mobile=True, has_touch=True)  # type: ignore[arg-type]
    page = context.new_page()
    add_authenticator(context, page)
    sign_up(page, "phone.passkey@example.com")
    page.goto("/dashboard/security")
    page.get_by_label("Name of the new passkey").fill("A phone with a rather long passkey name")
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.locator("tr.passkey-row")).to_have_count(1)
    shot(page, "16-phone-security")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.goto("/login")
    shot(page, "17-phone-login")
    context.close()


def test_no_key_or_password_reached_the_log_or_the_database(context: BrowserContext, server: Server) -> None:
    """Runs last in this module: no key the browser saw, nor the password, is in any file the server
    wrote. Run alone, it first signs up and creates a key itself."""
    if not server.seen_keys:
        page = context.new_page()
        sign_up(page, "last.check@example.com")
        confirm_email(page, server, "last.check@example.com")
        server.seen_keys.append(create_key(page, "checked last"))
    assert server.seen_keys
    written = b"".join(path.read_bytes() for path in server.workdir.iterdir() if path.is_file())
    assert PASSWORD.encode() not in written
    for raw in server.seen_keys:
        assert raw.encode() not in written
