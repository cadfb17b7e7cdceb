"""End to end against a real `thotbot serve`: the email change's answers, its rate limit and its
cancellation, and the security log's folding, paging and retention (issue 9, items 5 and 12)."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.factories import make_api_key, make_user
from tests.live import LiveServer, start_server
from tests.smtp import Inbox, Received
from thotbot.config import load_settings
from thotbot.core import keys
from thotbot.core.dates import utcnow
from thotbot.services import Services, build_services
from thotbot.storage import SecurityLog

THOTBOT = str(Path(sys.executable).parent / "thotbot")
PASSWORD = "a long enough password"
OWNER = "owner@example.com"
OTHER = "other@example.com"
_ROW = re.compile(r"<tr[^>]*>(.*?)</tr>", re.S)
_CELL = re.compile(r'<td data-label="(\w+)">(.*?)</td>', re.S)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_NOTICE = re.compile(r'<div class="notice" role="status">(.*?)</div>', re.S)
_TAG = re.compile(r"<[^>]+>")


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [THOTBOT, *args], input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class Site:
    """One database, the servers that share it, the CLI against it, and its stores to arrange with."""

    env: dict[str, str]
    services: Services
    servers: list[LiveServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.servers[0].url

    def cli(self, *args: str, stdin: str | None = None) -> str:
        return _cli(self.env, *args, stdin=stdin)

    def create_key(self, name: str, *extra: str, user: str = OWNER) -> tuple[str, str]:
        """A key made by the CLI: (raw key, key id)."""
        raw = self.cli("keys", "create", "--user", user, "--name", name, *extra).strip()
        # Its id from the shared database: a second CLI process would take a second or two to start.
        record = self.services.keys.find_by_hash(keys.hash_key(raw))
        assert record is not None
        return raw, record.id


def _settings(tmp_path: Path, inbox: Inbox) -> dict[str, str]:
    return {
        "THOTBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'thotbot.db'}",
        "THOTBOT_SMTP_URL": inbox.url,
        # Many requests come from one address here; the limits have their own tests.
        "THOTBOT_RATE_LIMIT": "100000/minute",
        "THOTBOT_ANON_RATE_LIMIT": "100000/minute",
    }


@pytest.fixture
def site(tmp_path: Path, inbox: Inbox) -> Iterator[Site]:
    server = start_server(tmp_path, _settings(tmp_path, inbox))
    # The server has migrated the database; accounts are made through the same stores it uses.
    services = build_services(load_settings(database_url=server.env["THOTBOT_DATABASE_URL"]))
    site = Site(server.env, services, [server])
    try:
        make_user(services, OWNER, password=PASSWORD)
        make_user(services, OTHER, password=PASSWORD)
        yield site
    finally:
        for running in site.servers:
            running.stop()
        services.engine.dispose()


class Browser:
    """The dashboard through httpx: a cookie jar, the forms' CSRF tokens, the pages' text."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30)

    def sign_in(self, email: str = OWNER, password: str = PASSWORD) -> None:
        page = self.client.get("/login").text
        response = self.client.post(
            "/login", data={"email": email, "password": password, "csrf_token": _csrf(page)}
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"].startswith("/dashboard")

    def security(self, query: str = "") -> str:
        response = self.client.get("/dashboard/security" + query)
        assert response.status_code == 200, response.text
        return response.text

    def post(self, path: str, **fields: str) -> httpx.Response:
        return self.client.post(path, data={"csrf_token": _csrf(self.security()), **fields})

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def browser(site: Site) -> Iterator[Browser]:
    browser = Browser(site.url)
    browser.sign_in()
    yield browser
    browser.close()


def _csrf(page: str) -> str:
    match = _CSRF.search(page)
    assert match, "the page has no CSRF token"
    return match.group(1)


def _text(fragment: str) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", fragment)).split())


def _log(page: str) -> list[dict[str, str]]:
    """The Security page's log rows, each cell's text by its label (When, What, Details, By, From)."""
    table = page.split('<table class="log">')[1].split("</table>")[0] if '<table class="log">' in page else ""
    rows = [{label: _text(cell) for label, cell in _CELL.findall(row)} for row in _ROW.findall(table)]
    return [row for row in rows if row]


def _notice(page: str) -> str:
    match = _NOTICE.search(page)
    return _text(match.group(1)) if match else ""


def _older(page: str) -> str | None:
    match = re.search(r'<a rel="next" href="([^"]+)"', page)
    return html.unescape(match.group(1)).split("#")[0] if match else None


def _newer(page: str) -> str | None:
    match = re.search(r'<a rel="prev" href="([^"]+)"', page)
    return html.unescape(match.group(1)).split("#")[0] if match else None


def _mails(inbox: Inbox, to: str, count: int) -> list[Received]:
    deadline = time.monotonic() + 30
    while len(inbox.to(to)) < count and time.monotonic() < deadline:
        inbox.wait_for(len(inbox.received) + 1, timeout=1)
    return inbox.to(to)


# Item 5: the email change tells nothing about other accounts, and is rate limited.


def test_a_taken_and_a_free_address_get_the_same_answer_and_log_line(
    site: Site, browser: Browser, inbox: Inbox
) -> None:
    answers = []
    for address in (OTHER, "free@example.com"):
        response = browser.post("/dashboard/security/email", email=address)
        page = browser.security()
        [line] = [row for row in _log(page) if row["What"] == "Email change requested"][:1]
        answers.append(
            (
                response.status_code,
                response.headers["location"],
                _notice(page).replace(address, "ADDRESS"),
                _text(page.split('id="email-address"')[1].split("</section>")[0]).replace(address, "ADDRESS"),
                line["Details"].replace(address, "ADDRESS"),
            )
        )

    assert answers[0] == answers[1]
    assert answers[0][0] == 303
    assert "Check your inbox at ADDRESS" in answers[0][2]
    assert "Waiting for confirmation: ADDRESS" in answers[0][3]
    # The taken address's owner is told, with no link; the free one gets its link.
    [notice] = _mails(inbox, OTHER, 1)
    assert notice.message["Subject"] == "[Thotbot] Email change not possible"
    assert "nothing was changed" in notice.body
    assert "verify-email" not in notice.body
    assert "token" not in notice.body
    [link] = _mails(inbox, "free@example.com", 1)
    assert "/verify-email?token=" in link.link()
    assert OWNER not in [r for m in inbox.received for r in m.rcpt_tos]  # nothing changed, no notice


def test_the_api_answers_a_taken_and_a_free_address_alike(site: Site, inbox: Inbox) -> None:
    raw, key_id = site.create_key("granted")
    site.cli("keys", "grant", key_id, "account:security")
    headers = {"Authorization": f"Bearer {raw}"}

    def change(address: str) -> httpx.Response:
        deadline = time.monotonic() + 30  # the grant reaches the running server within a second
        while True:
            response = httpx.put(f"{site.url}/v1/account/email", json={"email": address}, headers=headers)
            if response.status_code != 403 or time.monotonic() > deadline:
                return response
            time.sleep(0.1)

    taken, free = change(OTHER), change("free@example.com")

    assert (taken.status_code, taken.json()) == (free.status_code, free.json())
    assert taken.status_code == 202
    assert "verify-email" not in _mails(inbox, OTHER, 1)[0].body


def test_the_sixth_email_change_in_an_hour_is_refused_on_every_instance(
    tmp_path: Path, site: Site, browser: Browser, inbox: Inbox
) -> None:
    # A second server on the same database: the count is shared, not per process.
    second = start_server(tmp_path, _settings(tmp_path, inbox), log=tmp_path / "second.log")
    site.servers.append(second)
    there = Browser(second.url)
    there.sign_in()
    try:
        for n in range(5):
            where = browser if n % 2 else there
            response = where.post(
                "/dashboard/security/email", email=OTHER if n == 2 else f"new{n}@example.com"
            )
            assert response.status_code == 303, n

        refused = there.post("/dashboard/security/email", email="sixth@example.com")
        taken = browser.post("/dashboard/security/email", email=OTHER)
    finally:
        there.close()

    for response in (refused, taken):
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) > 55 * 60
        assert "at most 5 an hour" in html.unescape(response.text)
    assert _mails(inbox, "sixth@example.com", 0) == []
    assert len(_mails(inbox, OTHER, 1)) == 1  # only the third request's notice
    rows = _log(browser.security())
    refusals = [row for row in rows if row["What"] == "Email change refused"]
    assert len(refusals) == 2  # one per session: each browser's repeats would fold on its own row
    assert sum(row["What"] == "Email change requested" for row in rows) == 5


# Item 12: the security log.


def test_a_flood_of_refusals_is_one_row_and_paging_reaches_the_oldest(site: Site, browser: Browser) -> None:
    # Sixty earlier sign-ins: more than a page of ordinary events before the flood.
    account = site.services.users.find_by_email(OWNER)
    assert account is not None
    for _ in range(60):
        site.services.security_log.record(account.id, "session.signed_in", actor="anonymous")
    raw, _ = site.create_key("plain")

    with httpx.Client(base_url=site.url, timeout=30) as attacker:
        for _ in range(105):
            response = attacker.put(
                "/v1/account/email",
                json={"email": "attacker@example.com"},
                headers={"Authorization": f"Bearer {raw}"},
            )
            assert response.json()["code"] == "restricted_endpoint"

    page = browser.security()
    rows = _log(page)
    assert len(rows) == 50
    [flood] = [row for row in rows if row["What"].startswith("Restricted endpoint refused")]
    assert "PUT /v1/account/email refused: restricted_endpoint" in flood["Details"]
    assert "105 times between" in flood["Details"]
    assert sum(row["What"] == "Signed in" for row in rows) >= 45  # the earlier events are still there
    assert _newer(page) is None

    seen = [row["What"] for row in rows]
    pages = 1
    while (older := _older(page)) is not None:
        page = browser.security(older.removeprefix("/dashboard/security"))
        seen += [row["What"] for row in _log(page)]
        pages += 1
        assert pages < 10
    assert pages == 2
    assert seen.count("Signed in") == 61  # the oldest too, on the last page
    newer = _newer(page)
    assert newer is not None
    back = _log(browser.security(newer.removeprefix("/dashboard/security")))
    assert [(r["What"], r["Details"]) for r in back] == [(r["What"], r["Details"]) for r in rows]


def test_a_bad_page_cursor_gets_the_newest_page_and_a_clear_message(browser: Browser) -> None:
    response = browser.client.get("/dashboard/security?before=not-a-cursor")

    assert response.status_code == 400
    assert "That page of the log does not exist" in response.text
    assert "Traceback" not in response.text
    assert _log(response.text)[0]["What"] == "Signed in"


def test_takeover_attempts_refused_by_the_guard_are_logged(site: Site, browser: Browser) -> None:
    read_only, read_only_id = site.create_key("reader", "--read-only")
    revoked, revoked_id = site.create_key("old")
    site.cli("keys", "revoke", revoked_id)
    attempts = [(read_only, "insufficient_scope")] * 3 + [(revoked, "revoked_api_key")]

    for raw, code in attempts:
        deadline = time.monotonic() + 30  # the revocation reaches the running server within a second
        while True:
            response = httpx.put(
                f"{site.url}/v1/account/email",
                json={"email": "attacker@example.com"},
                headers={"Authorization": f"Bearer {raw}"},
            )
            if response.json()["code"] == code or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert response.json()["code"] == code
    # An ordinary call by the same key writes nothing.
    assert httpx.get(f"{site.url}/v1/me", headers={"Authorization": f"Bearer {read_only}"}).status_code == 200

    rows = [row for row in _log(browser.security()) if row["What"].startswith("Restricted endpoint refused")]
    by_key = {row["What"].split()[-1]: row for row in rows}
    assert set(by_key) == {read_only_id, revoked_id}
    assert "PUT /v1/account/email refused: insufficient_scope" in by_key[read_only_id]["Details"]
    assert "3 times between" in by_key[read_only_id]["Details"]
    assert "PUT /v1/account/email refused: revoked_api_key" in by_key[revoked_id]["Details"]
    assert "times between" not in by_key[revoked_id]["Details"]
    assert "127.0.0.1" in by_key[read_only_id]["From"]
    assert "thot_ak_" not in site.servers[0].log_text()


def test_refusals_past_the_rate_limit_write_nothing(tmp_path: Path, inbox: Inbox) -> None:
    settings = {**_settings(tmp_path, inbox), "THOTBOT_ANON_RATE_LIMIT": "5/minute"}
    server = start_server(tmp_path, settings)
    services = build_services(load_settings(database_url=settings["THOTBOT_DATABASE_URL"]))
    try:
        account = make_user(services, OWNER, password=PASSWORD)
        raw, _ = make_api_key(services, account, name="reader", read_only=True)
        with httpx.Client(base_url=server.url, timeout=30) as attacker:
            headers = {"Authorization": f"Bearer {raw}"}
            body = {"email": "x@example.com"}
            codes = [
                attacker.put("/v1/account/email", json=body, headers=headers).json()["code"] for _ in range(8)
            ]

        assert codes == ["insufficient_scope"] * 5 + ["rate_limited"] * 3
        [event] = services.security_log.list_for_account(account.id)
        assert (event.action, event.count) == ("restricted.refused", 5)
    finally:
        server.stop()
        services.engine.dispose()


def test_the_owner_cancels_a_pending_change_and_its_link_dies(
    site: Site, browser: Browser, inbox: Inbox
) -> None:
    browser.post("/dashboard/security/email", email="new@example.com")
    [mail] = _mails(inbox, "new@example.com", 1)
    token = mail.link().split("token=")[1]
    assert "Cancel this change" in browser.security()

    forged = browser.client.post("/dashboard/security/email/cancel", data={})  # no CSRF token
    assert forged.status_code == 403
    assert "Waiting for confirmation" in browser.security()
    cancelled = browser.post("/dashboard/security/email/cancel")

    assert cancelled.status_code == 303
    page = browser.security()
    assert "Waiting for confirmation" not in page
    assert "Email change cancelled: the link we sent no longer works." in _notice(page)
    [line] = [row for row in _log(page) if row["What"] == "Email change cancelled"]
    assert line["Details"] == "pending change to new@example.com cancelled: cancelled by the owner"
    assert _follow(site, token).status_code == 400
    assert _follow_and_see_email(browser) == OWNER


def test_a_password_change_cancels_a_pending_change(site: Site, browser: Browser, inbox: Inbox) -> None:
    browser.post("/dashboard/security/email", email="new@example.com")
    [mail] = _mails(inbox, "new@example.com", 1)
    token = mail.link().split("token=")[1]

    changed = browser.post(
        "/dashboard/security/password", current_password=PASSWORD, new_password="another long passphrase"
    )

    assert changed.status_code == 303
    page = browser.security()
    assert "Waiting for confirmation" not in page
    [line] = [row for row in _log(page) if row["What"] == "Email change cancelled"]
    assert line["Details"] == "pending change to new@example.com cancelled: the password was changed"
    assert _follow(site, token).status_code == 400
    assert _follow_and_see_email(browser) == OWNER


def _follow(site: Site, token: str) -> httpx.Response:
    """Follow a verification link as its reader would: open it, press Confirm."""
    with httpx.Client(base_url=site.url, timeout=30) as reader:
        opened = reader.get("/verify-email", params={"token": token})
        return reader.post("/verify-email", data={"csrf_token": _csrf(opened.text), "token": token})


def _follow_and_see_email(browser: Browser) -> str:
    match = re.search(r'<strong class="current-email">([^<]+)</strong>', browser.security())
    assert match
    return html.unescape(match.group(1))


def test_old_events_are_pruned_by_the_running_server(tmp_path: Path, inbox: Inbox) -> None:
    settings = {**_settings(tmp_path, inbox), "THOTBOT_SECURITY_LOG_RETENTION_DAYS": "30"}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("THOTBOT_")}, **settings}
    _cli(env, "db", "upgrade")
    _cli(env, "users", "create", OWNER, "--password-stdin", stdin=PASSWORD)
    services = build_services(load_settings(database_url=settings["THOTBOT_DATABASE_URL"]))
    try:
        account = services.users.find_by_email(OWNER)
        assert account is not None
        now = utcnow()
        log = services.security_log
        log.record(account.id, "old.event", actor="operator", now=now - timedelta(days=31))
        log.record(account.id, "recent.event", actor="operator", now=now - timedelta(days=29))

        server = start_server(tmp_path, settings)
        try:
            deadline = time.monotonic() + 30
            while "old.event" in _actions(log, account.id) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            server.stop()
        assert "old.event" not in _actions(log, account.id)
        assert "recent.event" in _actions(log, account.id)
        assert "pruned 1 security log events older than 30 days" in server.log_text()
    finally:
        services.engine.dispose()


def _actions(log: SecurityLog, account_id: str) -> list[str]:
    return [e.action for e in log.list_for_account(account_id, limit=1000)]


def test_a_bad_retention_stops_start_up_with_one_line(tmp_path: Path, inbox: Inbox) -> None:
    env = {**_settings(tmp_path, inbox), "THOTBOT_SECURITY_LOG_RETENTION_DAYS": "forever", "PATH": ""}
    done = subprocess.run(
        [THOTBOT, "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0
    assert "THOTBOT_SECURITY_LOG_RETENTION_DAYS: " in done.stderr
    assert "Traceback" not in done.stderr
