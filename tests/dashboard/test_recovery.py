"""End to end against a real `thotbot serve` and a real SMTP server: sign-up's quota and address
verification, the forgotten-password flow, and the operator's reset-password, disable and enable.

One server serves the whole module; each test signs up from its own loopback source address
(127.0.0.x), so the per-address sign-up quota of one test never touches another's.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from tests.live import LiveServer, start_server
from tests.smtp import Inbox, Received, smtp_server
from thotbot.cli import main
from thotbot.config import load_settings
from thotbot.core.dates import utcnow
from thotbot.services import build_services
from thotbot.storage.models import AccountToken

PASSWORD = "purple monkey dishwasher 42"
NEW_PASSWORD = "lamp orbit walrus tea"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
_TOKEN_FIELD = re.compile(r'name="token" value="([^"]+)"')


@dataclass
class Live:
    server: LiveServer
    inbox: Inbox
    #: Every Browser opened by the running test, closed when it ends.
    clients: list[httpx.Client] = field(default_factory=list)

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run the `thotbot` command in this process (a subprocess costs seconds on a busy machine)
        with the server's settings: it shares only the database with the server, as a shell would."""
        out, err = io.StringIO(), io.StringIO()
        settings = {k: v for k, v in self.server.env.items() if k.startswith("THOTBOT_")}
        saved = {k: os.environ.get(k) for k in settings}
        os.environ.update(settings)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                stdin_before, sys.stdin = sys.stdin, io.StringIO(stdin)
                try:
                    code = main(list(args))
                finally:
                    sys.stdin = stdin_before
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return subprocess.CompletedProcess(["thotbot", *args], code, out.getvalue(), err.getvalue())

    def create_user(self, email: str) -> None:
        done = self.cli("users", "create", email, "--password-stdin", stdin=PASSWORD)
        assert done.returncode == 0, done.stderr

    def mails(self, to: str, count: int, subject: str) -> list[Received]:
        """The mails to ``to`` with this subject, once there are ``count`` of them (or the timeout)."""
        deadline = time.monotonic() + 20
        while True:
            found = [m for m in self.inbox.to(to) if m.message["subject"] == "[Thotbot] " + subject]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def link(self, mail: Received) -> str:
        """The mailed link, pointed at the loopback address the server listens on."""
        return mail.link().replace(self.server.public_url, self.server.url)


class Browser:
    """A cookie-keeping HTTP client that connects from one loopback source address."""

    def __init__(self, live: Live, source: str, user_agent: bytes | None = None) -> None:
        headers = {b"User-Agent": user_agent} if user_agent is not None else {}
        self.http = httpx.Client(
            base_url=live.server.url,
            transport=httpx.HTTPTransport(local_address=source),
            headers=headers,
            timeout=30,
        )
        live.clients.append(self.http)

    def get(self, path: str, *, follow: bool = True) -> httpx.Response:
        return self.http.get(path, follow_redirects=follow)

    def submit(self, page: str, path: str, data: dict[str, str], *, follow: bool = True) -> httpx.Response:
        """Post a form of ``page`` (for its CSRF token) to ``path``."""
        match = _CSRF.search(page)
        assert match, page
        return self.http.post(path, data={**data, "csrf_token": match.group(1)}, follow_redirects=follow)

    def sign_up(self, email: str) -> httpx.Response:
        return self.submit(self.get("/signup").text, "/signup", {"email": email, "password": PASSWORD})

    def sign_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return self.submit(self.get("/login").text, "/login", {"email": email, "password": password})

    def create_key(self) -> httpx.Response:
        page = self.get("/dashboard/api-keys/new")
        form_token = _FORM_TOKEN.search(page.text)
        data = {"name": "laptop", "expiry": "30", "expiry_date": "", "access": "full"}
        if form_token:
            data["form_token"] = form_token.group(1)
        return self.submit(page.text, "/dashboard/api-keys/new", data)

    def forgot(self, email: str) -> httpx.Response:
        return self.submit(self.get("/forgot-password").text, "/forgot-password", {"email": email})


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("recovery")
    with smtp_server() as inbox:
        settings = {
            "THOTBOT_DATABASE_URL": f"sqlite:///{workdir / 'data' / 'thotbot.db'}",
            "THOTBOT_SMTP_URL": inbox.url,
            "THOTBOT_RATE_LIMIT": "100000/minute",
            "THOTBOT_ANON_RATE_LIMIT": "100000/minute",
        }
        server = start_server(workdir, settings, public_url=True)
        try:
            yield Live(server, inbox)
        finally:
            server.stop()


@pytest.fixture(autouse=True)
def _close_browsers(live: Live) -> Iterator[None]:
    yield
    while live.clients:
        live.clients.pop().close()


def _api(live: Live, method: str, path: str, raw: str, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {raw}"}
    return httpx.request(method, live.server.url + path, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


def _cli_key(live: Live, email: str) -> tuple[str, str]:
    """A key made by the operator for the account: (the key, its id)."""
    done = live.cli("keys", "create", "--user", email, "--name", "ci")
    assert done.returncode == 0, done.stderr
    key_id = re.search(r"created key (key_[0-9a-f]+)", done.stderr)
    assert key_id, done.stderr
    return done.stdout.strip(), key_id.group(1)


# 6. Sign-up


def test_a_sign_up_burst_from_one_address_gets_429_while_another_address_signs_up(live: Live) -> None:
    for i in range(5):
        response = Browser(live, "127.0.0.2").sign_up(f"burst{i}@example.com")
        assert response.url.path == "/dashboard", response.text

    refused = Browser(live, "127.0.0.2").sign_up("burst5@example.com")

    assert refused.status_code == 429
    assert "Too many accounts were created from your network" in refused.text
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    # No account was made: its password signs nobody in.
    assert Browser(live, "127.0.0.2").sign_in("burst5@example.com").status_code == 400
    elsewhere = Browser(live, "127.0.0.3").sign_up("elsewhere@example.com")
    assert elsewhere.url.path == "/dashboard"


def test_an_unverified_account_cannot_create_a_key_until_it_follows_the_mailed_link(live: Live) -> None:
    email = "newbie@example.com"
    browser = Browser(live, "127.0.0.4")
    assert browser.sign_up(email).url.path == "/dashboard"
    [first] = live.mails(email, 1, "Confirm your email address")

    refused = browser.get("/dashboard/api-keys/new")
    assert refused.status_code == 403
    assert "Confirm your email address first" in refused.text
    assert 'action="/verify-account/resend"' in refused.text
    assert browser.create_key().status_code == 403
    # A key the operator made for it, even granted account:security, cannot make more keys.
    raw, key_id = _cli_key(live, email)
    assert live.cli("keys", "grant", key_id, "account:security").returncode == 0
    api = _api(live, "POST", "/v1/keys", raw, json={"name": "more"})
    assert api.status_code == 403
    assert api.json()["code"] == "email_not_verified"

    resent = browser.submit(refused.text, "/verify-account/resend", {})
    assert "We sent a new link to newbie@example.com" in resent.text
    [_, second] = live.mails(email, 2, "Confirm your email address")
    superseded = browser.get(live.link(first))
    assert (
        browser.submit(superseded.text, "/verify-account", _token_field(superseded.text)).status_code == 400
    )

    page = browser.get(live.link(second))
    assert page.status_code == 200
    assert "Confirm my email address" in page.text
    confirmed = browser.submit(page.text, "/verify-account", _token_field(page.text))
    assert confirmed.url.path == "/dashboard/api-keys"
    assert "Your email address is confirmed" in confirmed.text

    assert browser.create_key().status_code == 200
    assert _wait_status(live, "POST", "/v1/keys", raw, 201, json={"name": "more"})
    again = browser.get(live.link(second))
    assert browser.submit(again.text, "/verify-account", _token_field(again.text)).status_code == 400


def test_no_mail_quotes_the_user_agent_raw(live: Live) -> None:
    pasted = "thot_ak_" + "c0ffee" * 16
    hostile = (
        f"{pasted} <script>alert(1)</script>\"'><img src=x onerror=alert(2)> \x85\x9b31m Bcc: x@evil.example"
    ).encode("latin-1")
    email = "hostile@example.com"
    browser = Browser(live, "127.0.0.5", user_agent=hostile)
    assert browser.sign_up(email).url.path == "/dashboard"
    [verification] = live.mails(email, 1, "Confirm your email address")
    page = browser.get(live.link(verification))
    browser.submit(page.text, "/verify-account", _token_field(page.text))
    assert browser.create_key().status_code == 200
    browser.forgot(email)
    [reset] = live.mails(email, 1, "Set a new password")
    browser.get(live.link(reset))
    browser.submit(browser.get("/reset-password").text, "/reset-password", {"password": NEW_PASSWORD})
    live.mails(email, 1, "Your password was reset")
    live.mails(email, 1, "A new API key was created")
    mails = live.inbox.to(email)

    assert len(mails) == 4
    for mail in mails:
        body = mail.body
        for raw_text in (
            pasted,
            "c0ffee" * 4,
            "<script",
            "<img",
            "alert(",
            "onerror=",
            "Bcc:",
            "evil.example",
        ):
            assert raw_text not in body, (mail.message["subject"], body)
        assert all(ch.isprintable() or ch == "\n" for ch in body), body
        assert "\\x85" not in body
        assert "using " in body  # the client is described, parsed


# 7. Account recovery


def test_forgot_password_answers_alike_and_its_link_works_once_ends_sessions_and_notifies(live: Live) -> None:
    email = "known@example.com"
    live.create_user(email)
    laptop = Browser(live, "127.0.0.6")
    assert laptop.sign_in(email).url.path == "/dashboard"
    guesser = Browser(live, "127.0.0.7")
    for _ in range(8):
        guesser.sign_in(email, "wrong password, guessed")
    assert guesser.sign_in(email).status_code == 429  # slowed, even with the right password

    phone = Browser(live, "127.0.0.6")
    known = phone.forgot(email)
    unknown = phone.forgot("nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    assert _anonymised(known.text, email) == _anonymised(unknown.text, "nobody@example.com")
    [mail] = live.mails(email, 1, "Set a new password")
    link = live.link(mail)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/reset-password\?token=[\w-]{43}", link)

    moved = phone.get(link, follow=False)
    assert moved.status_code == 303
    assert moved.headers["location"] == "/reset-password"  # the token leaves the address bar
    form = phone.get("/reset-password")
    token = link.rsplit("=", 1)[1]
    assert form.status_code == 200
    assert token not in form.text
    assert form.headers["referrer-policy"] in ("same-origin", "no-referrer")
    weak = phone.submit(form.text, "/reset-password", {"password": "short"})
    assert weak.status_code == 400
    assert "at least 10 characters" in weak.text
    done = phone.submit(weak.text, "/reset-password", {"password": NEW_PASSWORD})
    assert done.url.path == "/login"
    assert "Your new password is set" in done.text

    assert laptop.get("/dashboard").url.path == "/login"  # every session ended
    assert guesser.sign_in(email, NEW_PASSWORD).url.path == "/dashboard"  # throttle cleared
    assert Browser(live, "127.0.0.8").sign_in(email).status_code == 400  # the old password is gone
    [notice] = live.mails(email, 1, "Your password was reset")
    assert "reset link" in notice.body
    assert "contact the operator" not in notice.body
    assert live.inbox.to("nobody@example.com") == []
    replay = Browser(live, "127.0.0.8").get(link)
    assert replay.status_code == 400
    assert "This link no longer works" in replay.text


def test_a_reset_link_expires(live: Live) -> None:
    email = "late@example.com"
    live.create_user(email)
    browser = Browser(live, "127.0.0.9")
    browser.forgot(email)
    [mail] = live.mails(email, 1, "Set a new password")
    services = build_services(load_settings(database_url=live.server.env["THOTBOT_DATABASE_URL"]))
    try:
        with services.db.begin() as session:
            session.execute(update(AccountToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    finally:
        services.engine.dispose()

    page = browser.get(live.link(mail))

    assert page.status_code == 400
    assert "This link no longer works" in page.text


def test_the_operator_mails_a_reset_link(live: Live) -> None:
    email = "forgetful@example.com"
    live.create_user(email)

    done = live.cli("users", "reset-password", email)

    assert done.returncode == 0, done.stderr
    assert f"mailed a password reset link to {email}" in done.stderr
    [mail] = live.mails(email, 1, "Set a new password")
    assert "by the operator" in mail.body
    browser = Browser(live, "127.0.0.10")
    assert browser.get(live.link(mail)).status_code == 200
    unknown = live.cli("users", "reset-password", "ghost@example.com")
    assert unknown.returncode == 1
    assert "No account with email 'ghost@example.com'" in unknown.stderr


def test_disable_refuses_the_accounts_key_within_a_second_and_its_sign_in_and_session(live: Live) -> None:
    email = "leaving@example.com"
    live.create_user(email)
    raw, _ = _cli_key(live, email)
    assert _api(live, "GET", "/v1/me", raw).status_code == 200  # now cached by the server
    browser = Browser(live, "127.0.0.11")
    assert browser.sign_in(email).url.path == "/dashboard"

    done = live.cli("users", "disable", email)

    assert done.returncode == 0, done.stderr
    refused = _wait_for(lambda: _api(live, "GET", "/v1/me", raw), lambda r: r.status_code != 200)
    assert refused.status_code == 403
    assert refused.json()["code"] == "account_disabled"
    assert "Contact the operator" in refused.json()["detail"]
    assert browser.get("/dashboard").url.path == "/login"
    again = browser.sign_in(email)
    assert again.status_code == 403
    assert "This account is disabled" in again.text

    assert live.cli("users", "enable", email).returncode == 0
    assert _wait_status(live, "GET", "/v1/me", raw, 200)
    assert browser.sign_in(email).url.path == "/dashboard"


def _token_field(page: str) -> dict[str, str]:
    match = _TOKEN_FIELD.search(page)
    assert match, page
    return {"token": match.group(1)}


def _anonymised(page: str, email: str) -> str:
    return _CSRF.sub("", page).replace(email, "EMAIL")


def _wait_for(call: object, done: object, timeout: float = 5.0) -> httpx.Response:
    """Poll until ``done(response)``; the contract's second, with room for a slow machine."""
    assert callable(call)
    assert callable(done)
    deadline = time.monotonic() + timeout
    while True:
        response = call()
        assert isinstance(response, httpx.Response)
        if done(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def _wait_status(live: Live, method: str, path: str, raw: str, status: int, **kwargs: object) -> bool:
    response = _wait_for(lambda: _api(live, method, path, raw, **kwargs), lambda r: r.status_code == status)
    return response.status_code == status
