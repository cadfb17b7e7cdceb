"""The daily mail about failing keys, end to end through a real SMTP server (tests/smtp.py): once a
day per account however often or by however many instances it runs, never when turned off, never
when nothing failed; and through live servers, from their background task."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import pytest

from tests.factories import make_api_key, make_user
from tests.live import LiveServer, start_server
from tests.request_hours import add_hour
from tests.smtp import Inbox
from thotbot.config import Settings
from thotbot.core.dates import utcnow
from thotbot.notifications import mail_failing_integrations
from thotbot.services import Services, build_services
from thotbot.storage import AccountRecord, KeyRecord

SUBJECT = "[Thotbot] API keys that are failing"


def _yesterday() -> date:
    return utcnow().date() - timedelta(days=1)


def _noon(day: date) -> datetime:
    return datetime.combine(day, dtime(12), tzinfo=UTC)


@pytest.fixture
def mail_services(mail_settings: Settings) -> Iterator[Services]:
    services = build_services(mail_settings)
    yield services
    services.mailer.close()
    services.engine.dispose()


def _failing_account(services: Services, email: str = "ops@acme.example") -> tuple[AccountRecord, KeyRecord]:
    """An account with a key revoked three days ago and used 1,200 times yesterday."""
    account = make_user(services, email)
    _, key = make_api_key(services, account, name="nightly-sync")
    services.keys.revoke(key.id)
    hour = _noon(_yesterday())
    add_hour(
        services, key.id, hour, 700, code="revoked_api_key", user_agent="nightly-sync/3.1 (ops@acme.example)"
    )
    add_hour(
        services,
        key.id,
        hour + timedelta(hours=1),
        500,
        code="revoked_api_key",
        user_agent="nightly-sync/3.1",
    )
    return account, key


def _send(services: Services) -> tuple[int, int]:
    return mail_failing_integrations(services.failing, services.notifier, _yesterday())


def test_the_mail_names_the_key_its_use_the_client_and_the_links(
    mail_services: Services, inbox: Inbox
) -> None:
    account, key = _failing_account(mail_services)

    assert _send(mail_services) == (1, 1)
    assert mail_services.mailer.flush(10)

    [mail] = inbox.to(account.email)
    assert mail.message["Subject"] == SUBJECT
    body = mail.body
    assert "'nightly-sync' was revoked today and was used 1,200 times yesterday by nightly-sync 3.1." in body
    assert f"https://thotbot.example/dashboard/api-keys/{key.id}" in body
    assert "https://thotbot.example/dashboard/api-keys#integration-mail" in body
    assert "thot_ak_" not in body.replace(key.hint, "")


def test_run_twice_mails_once(mail_services: Services, inbox: Inbox) -> None:
    account, _ = _failing_account(mail_services)

    assert _send(mail_services) == (1, 1)
    assert _send(mail_services) == (1, 0)
    assert mail_services.mailer.flush(10)

    assert len(inbox.to(account.email)) == 1


def test_two_instances_at_once_mail_once(
    mail_settings: Settings, mail_services: Services, inbox: Inbox
) -> None:
    account, _ = _failing_account(mail_services)
    other = build_services(mail_settings)
    barrier = threading.Barrier(2)
    results: list[tuple[int, int]] = []

    def run(services: Services) -> None:
        barrier.wait()
        results.append(_send(services))

    try:
        threads = [threading.Thread(target=run, args=(s,)) for s in (mail_services, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert mail_services.mailer.flush(10)
        assert other.mailer.flush(10)
    finally:
        other.mailer.close()
        other.engine.dispose()

    assert sorted(results) == [(1, 0), (1, 1)]
    assert len(inbox.to(account.email)) == 1


def test_not_sent_when_turned_off(mail_services: Services, inbox: Inbox) -> None:
    account, _ = _failing_account(mail_services)
    mail_services.failing.set_integration_mail(account.id, False)

    assert _send(mail_services) == (1, 0)
    assert mail_services.mailer.flush(10)

    assert inbox.to(account.email) == []


def test_not_sent_when_nothing_mostly_failed(mail_services: Services, inbox: Inbox) -> None:
    account = make_user(mail_services, "fine@example.com")
    _, key = make_api_key(mail_services, account, name="fine")
    hour = _noon(_yesterday())
    add_hour(mail_services, key.id, hour, 90)
    add_hour(mail_services, key.id, hour, 10, code="not_found")
    # Failures today are tomorrow's mail, not this one.
    add_hour(mail_services, key.id, _noon(utcnow().date()), 50, code="rate_limited")

    assert _send(mail_services) == (0, 0)
    assert mail_services.mailer.flush(10)

    assert inbox.attempts == 0


def _wait_for_log(server: LiveServer, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log_text():
        if time.monotonic() > deadline or server.process.poll() is not None:
            pytest.fail(f"{text!r} not in the log:\n{server.log_text()}")
        time.sleep(0.1)


def test_two_live_servers_mail_once_from_their_background_task(
    database_url: str, inbox: Inbox, services: Services, tmp_path: Path
) -> None:
    account, _ = _failing_account(services)
    settings = {"THOTBOT_DATABASE_URL": database_url, "THOTBOT_SMTP_URL": inbox.url}
    first = start_server(tmp_path, settings, log=tmp_path / "first.log")
    try:
        [mail] = inbox.wait_for(1)
        assert mail.message["Subject"] == SUBJECT
        second = start_server(tmp_path, settings, log=tmp_path / "second.log")
        try:
            # The second instance ran the task too, and found the account mailed already.
            _wait_for_log(second, "this instance mailed 0")
        finally:
            assert second.stop() in (0, -15)
    finally:
        first.stop()

    assert len(inbox.to(account.email)) == 1
