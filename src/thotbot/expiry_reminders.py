"""Expiry reminders: the owner of a key is mailed 7 days and 1 day before it expires, each once.

``ExpiryReminders.run`` is what app.py's background task calls every ten minutes on every server
instance. It reads the few keys expiring within 7 days (an index range scan), asks
core/reminders.py which reminder each is due, and claims it with a conditional UPDATE before
mailing: of several instances running at once, exactly one sends each reminder. A claimed
reminder whose mail then fails is not sent again (the mailer retries and logs it in full): a
reminder missed is better than one sent twice. Blocking: call it through ``anyio.to_thread``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from thotbot.core.dates import utcnow
from thotbot.core.reminders import EXPIRES_SOON, Reminder, due_reminder
from thotbot.notifications import Notifier
from thotbot.storage import ExpiryReminderStore

__all__ = ["ExpiryReminders", "Sent"]

log = logging.getLogger("thotbot.reminders")


@dataclass(frozen=True, slots=True)
class Sent:
    key_id: str
    reminder: Reminder


class ExpiryReminders:
    def __init__(self, store: ExpiryReminderStore, notifier: Notifier) -> None:
        self._store = store
        self._notifier = notifier

    def run(self, now: datetime | None = None) -> list[Sent]:
        """Send the reminders due at ``now`` (the clock by default) that no one claimed yet."""
        now = now or utcnow()
        sent = []
        for candidate in self._store.candidates(now, EXPIRES_SOON):
            key = candidate.key
            reminder = due_reminder(
                now,
                key.created_at,
                key.expires_at,
                week_sent=candidate.week_sent_at is not None,
                day_sent=candidate.day_sent_at is not None,
            )
            if reminder is None or not self._store.claim(key.id, reminder, now):
                continue
            self._notifier.key_expires_soon(candidate.email, key, reminder, now=now)
            sent.append(Sent(key.id, reminder))
        if sent:
            log.info("sent %d API key expiry reminder(s)", len(sent))
        return sent
