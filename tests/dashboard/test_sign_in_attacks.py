"""Password guessing and passkey misuse against a real `thotbot serve`, over raw HTTP.

The attacker and the owner connect from different loopback addresses (127.0.0.2 and 127.0.0.3),
as two machines would. State that would take minutes to build by hand (many earlier guesses, an
expired wait) is arranged through the server's own database with the same throttle code.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.authenticator import SoftAuthenticator
from tests.dashboard.helpers import PASSWORD, csrf_token, field_errors
from tests.factories import bearer, make_api_key, make_user
from tests.live import start_server
from tests.smtp import Inbox, smtp_server
from thotbot.config import load_settings
from thotbot.core.dates import utcnow
from thotbot.services import Services, build_services
from thotbot.storage import AccountRecord
from thotbot.storage.models import SignInThrottle
from thotbot.storage.passkeys import PasskeyRecord
from thotbot.storage.throttle import bucket_for

ATTACKER, OWNER = "127.0.0.2", "127.0.0.3"
TIMEOUT = 60


@dataclass
class Server:
    url: str
    public_url: str
    inbox: Inbox
    db: Services


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir: Path = tmp_path_factory.mktemp("signin")
    database_url = f"sqlite:///{workdir / 'thotbot.db'}"
    with smtp_server() as inbox:
        settings = {"THOTBOT_DATABASE_URL": database_url, "THOTBOT_SMTP_URL": inbox.url}
        live = start_server(workdir, settings, public_url=True)
        db = build_services(load_settings(database_url=database_url, public_url=live.public_url))
        try:
            yield Server(live.url, live.public_url, inbox, db)
        finally:
            live.stop()
            db.engine.dispose()


def client(server: Server, address: str) -> httpx.Client:
    """A browser-like client on its own loopback address (the server sees it as the client's)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.url, transport=transport, timeout=TIMEOUT, follow_redirects=True)


def login_token(browser: httpx.Client) -> str:
    return csrf_token(browser.get("/login").text)


def post_login(browser: httpx.Client, email: str, password: str, token: str | None = None) -> httpx.Response:
    data = {"email": email, "password": password, "csrf_token": token or login_token(browser)}
    return browser.post("/login", data=data)


def signed_in(browser: httpx.Client) -> bool:
    return browser.get("/dashboard", follow_redirects=False).status_code == 200


def failures(server: Server, kind: str, value: str) -> int:
    with server.db.db() as session:
        row = session.get(SignInThrottle, bucket_for(kind, value))
        return row.failures if row else 0


def failed_events(server: Server, account: AccountRecord) -> int:
    events = server.db.security_log.list_for_account(account.id)
    return sum(e.action == "session.sign_in_failed" for e in events)


def burst(server: Server, address: str, email: str, passwords: list[str]) -> list[httpx.Response]:
    """Post all these passwords at once, each from its own session, after they all have a form."""
    browsers = [client(server, address) for _ in passwords]
    tokens = [login_token(b) for b in browsers]
    start = threading.Barrier(len(passwords))

    def attempt(n: int) -> httpx.Response:
        start.wait(timeout=TIMEOUT)
        return post_login(browsers[n], email, passwords[n], tokens[n])

    try:
        with ThreadPoolExecutor(len(passwords)) as pool:
            responses = list(pool.map(attempt, range(len(passwords))))
        assert not any(signed_in(b) for b in browsers)
        return responses
    finally:
        for b in browsers:
            b.close()


def test_a_burst_after_the_first_wait_checks_one_guess(server: Server) -> None:
    account = make_user(server.db, "burst@example.com", password=PASSWORD)
    # Twelve earlier guesses from the attacker, two minutes apart: the waits they earned are over.
    start = utcnow() - timedelta(minutes=30)
    for n in range(12):
        assert server.db.sign_in_throttle.reserve(
            account.email, ATTACKER, now=start + n * timedelta(minutes=2)
        ).allowed

    responses = burst(server, ATTACKER, account.email, ["wrong guess"] * 30)

    # All 30 are answered; exactly one was checked (and counted), it started a 128 s wait, and
    # the other 29 were refused unchecked.
    assert [r.status_code for r in responses] == [429] * 30
    assert failures(server, "account", account.email) == 13
    assert failed_events(server, account) == 1

    # Inside the wait, a burst holding the right password signs nobody in and counts nothing.
    responses = burst(server, ATTACKER, account.email, ["wrong guess"] * 14 + [PASSWORD] + ["x"] * 14)

    assert [r.status_code for r in responses] == [429] * 29
    assert all("Too many failed attempts" in field_errors(r.text)["password"] for r in responses)
    assert failures(server, "account", account.email) == 13
    assert failed_events(server, account) == 1


def test_the_owner_signs_in_from_elsewhere_while_an_attacker_guesses(server: Server) -> None:
    account = make_user(server.db, "owner@example.com", password=PASSWORD)
    with client(server, "127.0.0.4") as attacker, client(server, OWNER) as owner:
        statuses = [post_login(attacker, account.email, f"guess {n}").status_code for n in range(8)]

        answer = post_login(owner, account.email, PASSWORD)

        assert statuses == [400] * 5 + [429] * 3  # five free, then the attacker waits
        assert answer.url.path == "/dashboard", field_errors(answer.text)
        assert signed_in(owner)
        assert not signed_in(attacker)
        # The right password cleared the account's count, not the attacker's address.
        assert failures(server, "account", account.email) == 0
        assert failures(server, "address", "127.0.0.4") == 6


def _register_passkey(server: Server, account: AccountRecord) -> tuple[SoftAuthenticator, PasskeyRecord]:
    authenticator = SoftAuthenticator(server.public_url)
    ceremony = server.db.passkey_ceremonies.registration_options(account)
    credential = authenticator.create(ceremony.options)
    passkey = server.db.passkey_ceremonies.register(
        account.id, ceremony.challenge_id, credential, name="phone"
    )
    return authenticator, passkey


def passkey_sign_in(browser: httpx.Client, authenticator: SoftAuthenticator, **answer: Any) -> httpx.Response:
    headers = {"X-CSRF-Token": login_token(browser)}
    options = browser.post("/login/passkey/options", json={}, headers=headers).json()
    credential = authenticator.get(options["options"], **answer)
    body = {"challenge_id": options["challenge_id"], "credential": credential}
    return browser.post("/login/passkey", json=body, headers=headers)


def test_the_account_limit_pauses_password_sign_in_tells_the_owner_once_and_spares_passkeys(
    server: Server,
) -> None:
    account = make_user(server.db, "paused@example.com", password=PASSWORD)
    authenticator, _ = _register_passkey(server, account)
    # 97 guesses already came from a botnet, at most 4 from each of its addresses.
    for n in range(97):
        server.db.sign_in_throttle.reserve(account.email, f"10.9.{n // 4}.{n % 4 + 1}")

    with client(server, "127.0.0.5") as attacker, client(server, OWNER) as owner:
        statuses = [post_login(attacker, account.email, f"guess {n}").status_code for n in range(3)]
        [mail] = server.inbox.wait_for(1, timeout=TIMEOUT)
        more = [post_login(attacker, account.email, "again").status_code for _ in range(3)]
        refused = post_login(owner, account.email, PASSWORD)
        by_passkey = passkey_sign_in(owner, authenticator)

        # The 100th consecutive failure paused password sign-in, from every address.
        assert statuses == [400, 400, 429]
        assert more == [429] * 3
        assert refused.status_code == 429
        assert "sign in with a passkey" in field_errors(refused.text)["password"]
        # The owner was told once, with where the guess came from and what still works.
        assert mail.rcpt_tos == [account.email]
        assert "Password sign-in to your account is paused" in mail.message["Subject"]
        assert "passkey still works" in mail.body
        assert "127.0.0.5" in mail.body
        assert server.inbox.to(account.email) == [mail]
        events = server.db.security_log.list_for_account(account.id)
        assert [e.ip_address for e in events if e.action == "password.sign_in_paused"] == ["127.0.0.5"]
        # Passkey sign-in is never paused.
        assert by_passkey.status_code == 200, by_passkey.text
        assert by_passkey.json() == {"redirect": "/dashboard"}
        assert signed_in(owner)


def test_a_passkey_assertion_without_user_verification_is_refused(server: Server) -> None:
    account = make_user(server.db, "uv@example.com", password=PASSWORD)
    authenticator, _ = _register_passkey(server, account)
    with client(server, OWNER) as browser:
        answer = passkey_sign_in(browser, authenticator, user_verified=False)

        assert answer.status_code == 422
        assert answer.json()["code"] == "validation_error"
        assert "user verification" in answer.json()["detail"].lower()
        assert not signed_in(browser)


def _remove_on_dashboard(browser: httpx.Client, passkey: PasskeyRecord) -> httpx.Response:
    token = csrf_token(browser.get("/dashboard/security").text)
    return browser.post(f"/dashboard/security/passkeys/{passkey.id}/remove", data={"csrf_token": token})


@pytest.mark.parametrize("where", ["dashboard", "api"])
def test_removing_a_passkey_ends_the_sessions_it_signed_in(server: Server, where: str) -> None:
    account = make_user(server.db, f"remove-{where}@example.com", password=PASSWORD)
    stolen, passkey = _register_passkey(server, account)
    kept, _ = _register_passkey(server, account)
    with (
        client(server, ATTACKER) as thief,
        client(server, OWNER) as other_passkey,
        client(server, OWNER) as by_password,
        client(server, OWNER) as owner,
    ):
        assert passkey_sign_in(thief, stolen).status_code == 200
        assert passkey_sign_in(other_passkey, kept).status_code == 200
        assert post_login(by_password, account.email, PASSWORD).url.path == "/dashboard"
        assert post_login(owner, account.email, PASSWORD).url.path == "/dashboard"

        if where == "dashboard":
            answer = _remove_on_dashboard(owner, passkey)
            assert answer.url.fragment == "passkeys", answer.text
        else:
            raw, key = make_api_key(server.db, account, name="ops")
            server.db.keys.grant(key.id, "account:security")
            answer = httpx.delete(f"{server.url}/v1/account/passkeys/{passkey.id}", headers=bearer(raw))
            assert answer.status_code == 204, answer.text

        assert not signed_in(thief)
        assert signed_in(other_passkey)
        assert signed_in(by_password)
        assert signed_in(owner)
        assert passkey_sign_in(thief, stolen).status_code == 422


def test_a_burst_of_current_passwords_through_the_api_checks_one(server: Server) -> None:
    account = make_user(server.db, "api-burst@example.com", password=PASSWORD)
    raw, key = make_api_key(server.db, account, name="ops")
    server.db.keys.grant(key.id, "account:security")
    start = utcnow() - timedelta(minutes=30)
    for n in range(12):
        assert server.db.sign_in_throttle.reserve(
            account.email, "127.0.0.6", now=start + n * timedelta(minutes=2)
        ).allowed
    barrier = threading.Barrier(30)

    def change(current: str) -> httpx.Response:
        barrier.wait(timeout=TIMEOUT)
        return change_alone(server, raw, current)

    with ThreadPoolExecutor(30) as pool:
        statuses = sorted(r.status_code for r in pool.map(change, ["wrong guess"] * 30))
    right = change_alone(server, raw, PASSWORD)

    assert statuses == [422] + [429] * 29
    assert right.status_code == 429
    assert right.headers["Retry-After"]
    events = server.db.security_log.list_for_account(account.id)
    assert sum(e.action == "password.change_refused" for e in events) == 1
    assert not any(e.action == "password.changed" for e in events)


def change_alone(server: Server, raw: str, current: str) -> httpx.Response:
    with client(server, "127.0.0.6") as api:
        body = {"current_password": current, "new_password": "a brand new passphrase 77"}
        return api.put("/v1/account/password", json=body, headers=bearer(raw))
