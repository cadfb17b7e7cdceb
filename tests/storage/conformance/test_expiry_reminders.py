"""Expiry reminders' marks, on every store backend: which keys are candidates, and claiming each
reminder once."""

from __future__ import annotations

from datetime import timedelta

from tests.factories import make_api_key, make_user
from thotbot.core.dates import utcnow
from thotbot.core.reminders import EXPIRES_SOON, Reminder
from thotbot.services import Services
from thotbot.storage import KeyRecord

DAY = timedelta(days=1)


def _candidates(services: Services) -> dict[str, tuple[bool, bool]]:
    """Candidate key ids now, with (7-day claimed, 1-day claimed)."""
    found = services.reminder_marks.candidates(utcnow(), EXPIRES_SOON)
    return {c.key.id: (c.week_sent_at is not None, c.day_sent_at is not None) for c in found}


def _key(services: Services, expires_in: timedelta | None) -> KeyRecord:
    expires_at = utcnow() + expires_in if expires_in is not None else None
    return make_api_key(services, expires_at=expires_at)[1]


def test_candidates_are_live_keys_expiring_within_the_window(services: Services) -> None:
    soon = _key(services, 3 * DAY)
    tomorrow = _key(services, DAY / 2)
    _key(services, 8 * DAY)
    _key(services, None)
    expired = _key(services, DAY)
    services.keys.set_expiry(expired.id, utcnow() - DAY)
    revoked = _key(services, 2 * DAY)
    services.keys.revoke(revoked.id)
    disabled = _key(services, 2 * DAY)
    services.users.set_disabled(disabled.account_id, True)

    assert _candidates(services) == {soon.id: (False, False), tomorrow.id: (False, False)}


def test_a_candidate_carries_the_owners_address(services: Services) -> None:
    account = make_user(services, "owner@example.com")
    _, key = make_api_key(services, account, expires_at=utcnow() + 2 * DAY)

    [candidate] = services.reminder_marks.candidates(utcnow(), EXPIRES_SOON)

    assert candidate.email == "owner@example.com"
    assert candidate.key == key


def test_each_reminder_is_claimed_once(services: Services) -> None:
    key = _key(services, 3 * DAY)
    now = utcnow()

    assert services.reminder_marks.claim(key.id, Reminder.WEEK, now) is True
    assert services.reminder_marks.claim(key.id, Reminder.WEEK, now) is False
    assert _candidates(services) == {key.id: (True, False)}

    assert services.reminder_marks.claim(key.id, Reminder.DAY, now) is True
    assert services.reminder_marks.claim(key.id, Reminder.DAY, now) is False
    assert _candidates(services) == {}


def test_claiming_the_day_reminder_passes_over_the_week_one(services: Services) -> None:
    key = _key(services, DAY / 2)

    assert services.reminder_marks.claim(key.id, Reminder.DAY, utcnow()) is True

    assert services.reminder_marks.claim(key.id, Reminder.WEEK, utcnow()) is False
    assert _candidates(services) == {}


def test_a_revoked_key_cannot_be_claimed(services: Services) -> None:
    key = _key(services, 3 * DAY)
    services.keys.revoke(key.id)

    assert services.reminder_marks.claim(key.id, Reminder.WEEK, utcnow()) is False
    assert services.reminder_marks.claim("key_unknown", Reminder.WEEK, utcnow()) is False


def test_a_rolled_key_gets_no_reminder_of_its_shortened_expiry(services: Services) -> None:
    old = _key(services, 30 * DAY)

    _, new, _ = services.keys.roll(old.id, expires_at=utcnow() + 30 * DAY, old_expires_at=utcnow() + DAY)

    assert _candidates(services) == {}
    assert services.reminder_marks.claim(old.id, Reminder.DAY, utcnow()) is False
    assert new.id != old.id
