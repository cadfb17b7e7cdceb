"""SQLExpiryReminderStore: which expiring keys were mailed their reminders, claimed row by row.

Every server instance runs the reminder task; a reminder is sent by the one whose conditional
UPDATE (``... WHERE id = :id AND expiry_reminder_7d_at IS NULL``) changed the row, so none is
ever sent twice, whatever the number of instances.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update

from thotbot.core.reminders import Reminder
from thotbot.storage import KeyRecord
from thotbot.storage.db import SessionFactory
from thotbot.storage.keys import to_record
from thotbot.storage.models import Account, APIKey

__all__ = ["ReminderCandidate", "SQLExpiryReminderStore"]


@dataclass(frozen=True, slots=True)
class ReminderCandidate:
    """A key that may be due a reminder, with where to mail it and what was claimed already."""

    key: KeyRecord
    email: str
    week_sent_at: datetime | None
    day_sent_at: datetime | None


def reminder_column(reminder: str) -> str:
    return f"expiry_reminder_{Reminder(reminder).value}_at"


class SQLExpiryReminderStore:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def candidates(self, now: datetime, within: timedelta) -> list[ReminderCandidate]:
        # A range scan of ix_api_keys_expires_at: only keys expiring in the next 7 days are read.
        query = (
            select(APIKey, Account.email)
            .join(Account, Account.id == APIKey.account_id)
            .where(
                APIKey.expires_at > now,
                APIKey.expires_at <= now + within,
                APIKey.revoked_at.is_(None),
                Account.disabled_at.is_(None),
                or_(APIKey.expiry_reminder_7d_at.is_(None), APIKey.expiry_reminder_1d_at.is_(None)),
            )
            .order_by(APIKey.expires_at)
        )
        with self._sessions() as session:
            return [
                ReminderCandidate(to_record(row), email, row.expiry_reminder_7d_at, row.expiry_reminder_1d_at)
                for row, email in session.execute(query)
            ]

    def claim(self, key_id: str, reminder: str, now: datetime) -> bool:
        which = Reminder(reminder)
        column = getattr(APIKey, reminder_column(which))
        values: dict[str, object] = {reminder_column(which): now}
        if which is Reminder.DAY:
            # The 7-day reminder is passed over for good: it would come late, after this one.
            values["expiry_reminder_7d_at"] = func.coalesce(APIKey.expiry_reminder_7d_at, now)
        statement = (
            update(APIKey)
            .where(APIKey.id == key_id, column.is_(None), APIKey.revoked_at.is_(None))
            .values(values)
            .execution_options(synchronize_session=False)
        )
        with self._sessions.begin() as session:
            claimed: int = session.execute(statement).rowcount  # type: ignore[attr-defined]
        return claimed == 1
