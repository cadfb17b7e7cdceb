"""Expiry reminders end to end: the task run against a real database (SQLite and PostgreSQL) and
a real SMTP server, alone, many times and from two instances at once; and a live `thotbot serve`
whose background task mails the reminder and whose dashboard marks the key."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from tests.factories import PASSWORD, make_api_key, make_user
from tests.live import start_server
from tests.smtp import Inbox, Received, mail_to, smtp_server
from thotbot.config import Settings, load_settings
from thotbot.core.dates import utcnow
from thotbot.core.identity import Actor
from thotbot.core.reminders import Reminder
from thotbot.notifications import when_text
from thotbot.services import Services, build_services
from thotbot.storage import KeyRecord
from thotbot.storage.models import APIKey

DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)
ROLL_LINK = "https://thotbot.example/dashboard/api-keys/{}#roll"


@pytest.fixture
def settings(mail_settings: Settings) -> Settings:
    return mail_settings


def _subjects(mails: list[Received]) -> list[str]:
    return [str(m.message["subject"]) for m in mails]


def _week_before(key: KeyRecord) -> datetime:
    assert key.expires_at is not None
    return key.expires_at - 7 * DAY + MINUTE


def _day_before(key: KeyRecord) -> datetime:
    assert key.expires_at is not None
    return key.expires_at - DAY + MINUTE


def test_one_mail_7_days_and_one_1_day_before_however_often_the_task_runs(
    services: Services, mailing: Inbox
) -> None:
    account = make_user(services, "owner@example.com")
    raw, key = make_api_key(services, account, name="billing server", expires_at=utcnow() + 30 * DAY)

    assert services.expiry_reminders.run(_week_before(key) - 2 * MINUTE) == []
    sent = [services.expiry_reminders.run(_week_before(key) + n * MINUTE) for n in range(5)]
    assert [len(s) for s in sent] == [1, 0, 0, 0, 0]
    assert sent[0][0].reminder is Reminder.WEEK
    [week] = mail_to(services, mailing, "owner@example.com")

    sent = [services.expiry_reminders.run(_day_before(key) + n * MINUTE) for n in range(5)]
    assert [len(s) for s in sent] == [1, 0, 0, 0, 0]
    assert sent[0][0].reminder is Reminder.DAY
    mails = mail_to(services, mailing, "owner@example.com")
    assert _subjects(mails) == [
        "[Thotbot] Your API key 'billing server' expires in 7 days",
        "[Thotbot] Your API key 'billing server' expires in 1 day",
    ]
    assert key.expires_at is not None
    for mail, left in zip(mails, ("in 7 days", "in 1 day"), strict=True):
        assert "'billing server'" in mail.body
        assert key.hint in mail.body
        assert f"expires {left}, on {when_text(key.expires_at)}" in mail.body
        assert mail.link() == ROLL_LINK.format(key.id)
        assert raw not in mail.body
        assert raw not in mail.message.as_string()
    assert week.body == mails[0].body


def test_two_instances_at_once_send_each_reminder_once(settings: Settings, mailing: Inbox) -> None:
    first = build_services(settings)
    second = build_services(settings)
    try:
        account = make_user(first, "owner@example.com")
        keys = [make_api_key(first, account, expires_at=utcnow() + 30 * DAY)[1] for _ in range(4)]
        when = _week_before(keys[-1])
        start = threading.Barrier(4)
        sent: list[str] = []
        errors: list[BaseException] = []

        def run(services: Services) -> None:
            try:
                start.wait(10)
                for _ in range(3):
                    sent.extend(s.key_id for s in services.expiry_reminders.run(when))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(s,)) for s in (first, second, first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

        assert errors == []
        assert sorted(sent) == sorted(k.id for k in keys)
        assert first.mailer.flush(10)
        assert second.mailer.flush(10)
        mails = mailing.to("owner@example.com")
        assert sorted(m.link() for m in mails) == sorted(ROLL_LINK.format(k.id) for k in keys)
    finally:
        first.mailer.close()
        second.mailer.close()
        first.engine.dispose()
        second.engine.dispose()


def test_a_key_created_3_days_before_expiry_gets_only_the_1_day_reminder(
    services: Services, mailing: Inbox
) -> None:
    account = make_user(services, "owner@example.com")
    _, key = make_api_key(services, account, expires_at=utcnow() + 3 * DAY)

    assert services.expiry_reminders.run(utcnow()) == []
    assert services.expiry_reminders.run(utcnow() + DAY) == []
    [sent] = services.expiry_reminders.run(_day_before(key))

    assert sent.reminder is Reminder.DAY
    assert _subjects(mail_to(services, mailing, "owner@example.com")) == [
        "[Thotbot] Your API key 'test key' expires in 1 day"
    ]


def test_revoked_keys_and_disabled_accounts_get_none(services: Services, mailing: Inbox) -> None:
    revoked_owner = make_user(services, "revoked@example.com")
    _, revoked = make_api_key(services, revoked_owner, expires_at=utcnow() + 30 * DAY)
    services.key_lifecycle.revoke_as_operator(revoked.id)
    disabled_owner = make_user(services, "disabled@example.com")
    make_api_key(services, disabled_owner, expires_at=utcnow() + 30 * DAY)
    services.users.set_disabled(disabled_owner.id, True)
    live_owner = make_user(services, "live@example.com")
    make_api_key(services, live_owner, expires_at=utcnow() + 30 * DAY)

    for moment in (_week_before(revoked), _day_before(revoked)):
        services.expiry_reminders.run(moment)

    assert mail_to(services, mailing, "revoked@example.com") == []
    assert mail_to(services, mailing, "disabled@example.com") == []
    assert len(mail_to(services, mailing, "live@example.com")) == 2


def _created_days_ago(services: Services, key: KeyRecord, days: int) -> None:
    """Backdate a key's creation, as if it had been made long ago (no store method does this)."""
    with services.db.begin() as session:
        session.execute(update(APIKey).where(APIKey.id == key.id).values(created_at=utcnow() - days * DAY))


def test_a_rolled_key_gets_no_reminder_of_its_shortened_expiry(services: Services, mailing: Inbox) -> None:
    account = make_user(services, "owner@example.com")
    _, rolled = make_api_key(services, account, name="rolled", expires_at=utcnow() + 30 * DAY)
    _, kept = make_api_key(services, account, name="kept", expires_at=utcnow() + 3 * DAY)
    for key in (rolled, kept):
        _created_days_ago(services, key, 60)

    services.key_lifecycle.roll(account.id, rolled.id, Actor.operator(), old_expires_in=3 * DAY)
    sent = services.expiry_reminders.run(utcnow() + MINUTE)

    assert [(s.key_id, s.reminder) for s in sent] == [(kept.id, Reminder.WEEK)]
    reminders = [s for s in _subjects(mail_to(services, mailing, "owner@example.com")) if "expires" in s]
    assert reminders == ["[Thotbot] Your API key 'kept' expires in 3 days"]


def test_a_changed_expiry_gets_the_reminders_of_its_new_date(services: Services, mailing: Inbox) -> None:
    account = make_user(services, "owner@example.com")
    _, key = make_api_key(services, account, name="extended", expires_at=utcnow() + 30 * DAY)
    _created_days_ago(services, key, 60)
    [week] = services.expiry_reminders.run(_week_before(key))
    assert week.reminder is Reminder.WEEK
    assert key.expires_at is not None

    # Given 30 more days after its 7-day reminder: reminded again, 7 days before the new date.
    change = services.key_lifecycle.set_expiry(
        account.id, key.id, key.expires_at + 30 * DAY, Actor.operator()
    )
    extended = change.record
    assert services.expiry_reminders.run(_week_before(key) + MINUTE) == []
    [again] = services.expiry_reminders.run(_week_before(extended))
    assert (again.key_id, again.reminder) == (key.id, Reminder.WEEK)

    # Brought forward to expire in 3 days: no late 7-day reminder, the 1-day one in time.
    change = services.key_lifecycle.set_expiry(account.id, key.id, utcnow() + 3 * DAY, Actor.operator())
    assert services.expiry_reminders.run(utcnow() + MINUTE) == []
    [day] = services.expiry_reminders.run(_day_before(change.record))
    assert day.reminder is Reminder.DAY
    assert [s for s in _subjects(mail_to(services, mailing, "owner@example.com")) if "expires" in s] == [
        "[Thotbot] Your API key 'extended' expires in 7 days",
        "[Thotbot] Your API key 'extended' expires in 7 days",
        "[Thotbot] Your API key 'extended' expires in 1 day",
    ]


# A live server: its background task mails at start-up, and its dashboard marks the key.

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def live_inbox() -> Iterator[Inbox]:
    with smtp_server() as inbox:
        yield inbox


def _wait_for_mail(inbox: Inbox, to: str) -> list[Received]:
    deadline = time.monotonic() + 30
    while not inbox.to(to) and time.monotonic() < deadline:
        time.sleep(0.05)
    return inbox.to(to)


def test_a_live_server_mails_the_reminder_and_marks_the_key(
    sqlite_url: str, live_inbox: Inbox, tmp_path: Path
) -> None:
    services = build_services(load_settings(database_url=sqlite_url))
    try:
        account = make_user(services, "owner@example.com")
        raw, soon = make_api_key(services, account, name="deploy bot", expires_at=utcnow() + 3 * DAY)
        _, later = make_api_key(services, account, name="laptop", expires_at=utcnow() + 30 * DAY)
        _created_days_ago(services, soon, 60)
    finally:
        services.engine.dispose()
    settings = {
        "THOTBOT_DATABASE_URL": sqlite_url,
        "THOTBOT_SMTP_URL": live_inbox.url,
        "THOTBOT_RATE_LIMIT": "100000/minute",
        "THOTBOT_ANON_RATE_LIMIT": "100000/minute",
    }
    server = start_server(tmp_path, settings, public_url=True)
    try:
        [mail] = _wait_for_mail(live_inbox, "owner@example.com")
        assert mail.message["subject"] == "[Thotbot] Your API key 'deploy bot' expires in 3 days"
        assert mail.link() == f"{server.public_url}/dashboard/api-keys/{soon.id}#roll"
        assert raw not in mail.message.as_string()

        with httpx.Client(base_url=server.url, timeout=30, follow_redirects=True) as browser:
            page = browser.get("/login").text
            match = _CSRF.search(page)
            assert match, page
            data = {"email": "owner@example.com", "password": PASSWORD, "csrf_token": match.group(1)}
            assert browser.post("/login", data=data).url.path == "/dashboard"

            listing = browser.get("/dashboard/api-keys").text
            rows = {
                m.group(1): m.group(0) for m in re.finditer(r'data-key-id="(key_\w+)".*?</tr>', listing, re.S)
            }
            assert '<span class="badge badge-expiring">Expires in 3 days</span>' in rows[soon.id]
            assert "badge-expiring" not in rows[later.id]

            detail = browser.get(f"/dashboard/api-keys/{soon.id}").text
            assert '<span class="badge badge-expiring">Expires in 3 days</span>' in detail
            assert '<a class="button" href="#roll">Roll this key</a>' in detail
            assert 'id="roll"' in detail
            assert "badge-expiring" not in browser.get(f"/dashboard/api-keys/{later.id}").text
    finally:
        server.stop()
