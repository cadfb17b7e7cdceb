"""Expiry reminders, pure: which reminder a key is due, and how long it has left, in words.

A key that expires is mailed about twice, 7 days and 1 day before it stops working, each once. The
rules (docs/DASHBOARD.md, "Expiry reminders"):

- a reminder is due from its moment (expiry minus 7 days, minus 1 day) until the key expires;
- only the reminders whose moment came after the key was created: a key created to expire in 3 days
  gets the 1-day reminder only, one created to expire in 12 hours gets none;
- when the 1-day reminder is due, the 7-day one is no longer sent (it would arrive late and twice);
- revoked keys, keys of disabled accounts and keys that never expire get none (the store's query).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

__all__ = ["EXPIRES_SOON", "Reminder", "due_reminder", "expires_soon", "passed_reminders", "time_left"]

#: Within this, the dashboard marks a key "Expires in ..." and the 7-day reminder is due.
EXPIRES_SOON = timedelta(days=7)


class Reminder(StrEnum):
    WEEK = "7d"
    DAY = "1d"

    @property
    def before(self) -> timedelta:
        """How long before the key's expiry the reminder is due."""
        return timedelta(days=7) if self is Reminder.WEEK else timedelta(days=1)


def due_reminder(
    now: datetime,
    created_at: datetime,
    expires_at: datetime | None,
    *,
    week_sent: bool,
    day_sent: bool,
) -> Reminder | None:
    """The reminder to send for this key now, if any (``*_sent``: that reminder is claimed already)."""
    if expires_at is None or expires_at <= now:
        return None
    left = expires_at - now
    if left <= Reminder.DAY.before:
        # The 7-day reminder is never sent once this one is due, sent or not.
        if day_sent or created_at >= expires_at - Reminder.DAY.before:
            return None
        return Reminder.DAY
    if left <= Reminder.WEEK.before:
        if week_sent or created_at >= expires_at - Reminder.WEEK.before:
            return None
        return Reminder.WEEK
    return None


def passed_reminders(now: datetime, expires_at: datetime | None) -> frozenset[Reminder]:
    """The reminders whose moment has come by ``now`` for a key expiring at ``expires_at``.

    When a key's expiry changes, these are marked as passed over and the others cleared, as when a
    key is created: the new date gets the reminders still ahead of it (a key given 30 more days
    after its 7-day reminder is reminded again 7 days before its new date), never a late one (a
    key brought forward to expire in 3 days gets the 1-day reminder only).
    """
    if expires_at is None:
        return frozenset()
    return frozenset(r for r in Reminder if expires_at - r.before <= now)


def expires_soon(expires_at: datetime | None, now: datetime) -> bool:
    """Whether a key still working now stops within EXPIRES_SOON (the dashboard's badge)."""
    return expires_at is not None and now < expires_at <= now + EXPIRES_SOON


def time_left(expires_at: datetime, now: datetime) -> str:
    """'in 7 days', 'in 1 day', 'in 5 hours', 'in 20 minutes': whole days from a day on."""
    seconds = max(0.0, (expires_at - now).total_seconds())
    days = round(seconds / 86_400)
    if days >= 1 and seconds >= 86_400 - 3_600:
        return f"in {days} day{'s' if days != 1 else ''}"
    hours = round(seconds / 3_600)
    if hours >= 1:
        return f"in {hours} hour{'s' if hours != 1 else ''}"
    minutes = max(1, round(seconds / 60))
    return f"in {minutes} minute{'s' if minutes != 1 else ''}"
