"""Which expiry reminder a key is due, and when: the pure rules of core/reminders.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from thotbot.core.reminders import Reminder, due_reminder, expires_soon, passed_reminders, time_left

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def due(
    now: datetime,
    *,
    lifetime: timedelta = timedelta(days=30),
    week_sent: bool = False,
    day_sent: bool = False,
) -> Reminder | None:
    """The reminder due at ``now`` for a key created at T0 with this lifetime."""
    return due_reminder(now, T0, T0 + lifetime, week_sent=week_sent, day_sent=day_sent)


class TestALongLivedKey:
    expires = T0 + timedelta(days=30)

    @pytest.mark.parametrize(
        ("before_expiry", "expected"),
        [
            (timedelta(days=20), None),
            (timedelta(days=7) + timedelta(seconds=1), None),
            (timedelta(days=7), Reminder.WEEK),
            (timedelta(days=3), Reminder.WEEK),
            (DAY + timedelta(seconds=1), Reminder.WEEK),
            (DAY, Reminder.DAY),
            (HOUR, Reminder.DAY),
            (timedelta(seconds=1), Reminder.DAY),
            (timedelta(0), None),
            (-HOUR, None),
        ],
    )
    def test_each_reminder_from_its_moment_until_expiry(
        self, before_expiry: timedelta, expected: Reminder | None
    ) -> None:
        assert due(self.expires - before_expiry) is expected

    def test_a_reminder_claimed_is_not_due_again(self) -> None:
        assert due(self.expires - 3 * DAY, week_sent=True) is None
        assert due(self.expires - HOUR, week_sent=True, day_sent=True) is None

    def test_the_day_reminder_does_not_wait_for_the_week_one(self) -> None:
        # The week reminder was never sent (the server was down): the day one comes, the week one never.
        assert due(self.expires - HOUR, week_sent=False) is Reminder.DAY
        assert due(self.expires - HOUR, week_sent=False, day_sent=True) is None

    def test_a_week_reminder_caught_up_late_is_still_sent_before_the_day_one(self) -> None:
        assert due(self.expires - 5 * DAY) is Reminder.WEEK


class TestAShortLivedKey:
    def test_created_to_expire_in_3_days_gets_only_the_day_reminder(self) -> None:
        lifetime = 3 * DAY
        assert due(T0, lifetime=lifetime) is None
        assert due(T0 + DAY, lifetime=lifetime) is None
        assert due(T0 + 2 * DAY, lifetime=lifetime) is Reminder.DAY

    def test_created_to_expire_in_exactly_7_days_gets_only_the_day_reminder(self) -> None:
        lifetime = 7 * DAY
        assert due(T0, lifetime=lifetime) is None
        assert due(T0 + 3 * DAY, lifetime=lifetime) is None
        assert due(T0 + 6 * DAY, lifetime=lifetime) is Reminder.DAY

    def test_created_to_expire_in_12_hours_gets_none(self) -> None:
        lifetime = 12 * HOUR
        assert [due(T0 + n * HOUR, lifetime=lifetime) for n in range(12)] == [None] * 12


def test_a_key_that_never_expires_gets_none() -> None:
    assert due_reminder(T0, T0 - 400 * DAY, None, week_sent=False, day_sent=False) is None


@pytest.mark.parametrize(
    ("left", "expected"),
    [
        (timedelta(days=7), True),
        (timedelta(days=3), True),
        (timedelta(seconds=1), True),
        (timedelta(days=7, seconds=1), False),
        (timedelta(0), False),
        (-DAY, False),
    ],
)
def test_expires_soon(left: timedelta, expected: bool) -> None:
    assert expires_soon(T0 + left, T0) is expected
    assert expires_soon(None, T0) is False


@pytest.mark.parametrize(
    ("left", "text"),
    [
        (timedelta(days=7), "in 7 days"),
        (timedelta(days=7) - timedelta(minutes=9), "in 7 days"),
        (timedelta(days=3, hours=2), "in 3 days"),
        (DAY, "in 1 day"),
        (DAY - timedelta(minutes=10), "in 1 day"),
        (timedelta(hours=20), "in 20 hours"),
        (HOUR, "in 1 hour"),
        (timedelta(minutes=20), "in 20 minutes"),
        (timedelta(seconds=5), "in 1 minute"),
    ],
)
def test_time_left(left: timedelta, text: str) -> None:
    assert time_left(T0 + left, T0) == text


def test_a_changed_expiry_passes_over_only_the_reminders_already_due() -> None:
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert passed_reminders(now, None) == frozenset()
    assert passed_reminders(now, now + timedelta(days=30)) == frozenset()
    assert passed_reminders(now, now + timedelta(days=3)) == {Reminder.WEEK}
    assert passed_reminders(now, now + timedelta(days=7)) == {Reminder.WEEK}
    assert passed_reminders(now, now + timedelta(hours=12)) == {Reminder.WEEK, Reminder.DAY}
