"""SQLQuotaStore: how many times an action was taken per bucket in a fixed window.

For actions that are fine a few times and abusive in bulk (sign-ups from one address, password
reset mails). It lives in the database, so every server instance counts together. The sign-in
throttle (storage/throttle.py) is a different thing: it slows failures down, this caps successes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from thotbot.core.dates import utcnow
from thotbot.storage.db import SessionFactory
from thotbot.storage.models import QuotaCount

__all__ = ["Quota", "SQLQuotaStore", "quota_bucket"]


@dataclass(frozen=True, slots=True)
class Quota:
    #: A short name for the kind of bucket: "signup-address", "reset-email", ...
    kind: str
    limit: int
    window: timedelta

    def retry_after(self, window_started_at: datetime, now: datetime) -> int:
        """Seconds until the window that started then ends (at least 1: the quota is spent)."""
        seconds = max((window_started_at + self.window - now).total_seconds(), 1.0)
        return int(seconds) + (seconds % 1 > 0)


def quota_bucket(kind: str, value: str) -> str:
    # Hashed so the table holds no email or client address, only that something was counted.
    return f"{kind}:{hashlib.sha256(value.encode('utf-8', 'replace')).hexdigest()}"[:80]


class SQLQuotaStore:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def hit(self, quota: Quota, value: str, *, now: datetime | None = None) -> int:
        """Count one action; 0 when within the quota, else the seconds until the window ends (the
        action is then not counted: being refused does not push the wait further)."""
        now = now or utcnow()
        bucket = quota_bucket(quota.kind, value)
        for attempt in range(2):
            try:
                with self._sessions.begin() as session:
                    row = session.get(QuotaCount, bucket, with_for_update=True)
                    if row is None:
                        session.add(QuotaCount(bucket=bucket, hits=1, window_started_at=now))
                        return 0
                    if now - row.window_started_at >= quota.window:
                        row.hits, row.window_started_at = 1, now
                        return 0
                    if row.hits >= quota.limit:
                        return quota.retry_after(row.window_started_at, now)
                    row.hits += 1
                    return 0
            except IntegrityError:
                # Another request inserted the same bucket first: count again on its row.
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def prune(self, older_than: timedelta, *, now: datetime | None = None) -> int:
        """Forget windows that started before ``older_than`` ago (the longest window in use)."""
        cutoff = (now or utcnow()) - older_than
        with self._sessions.begin() as session:
            result = session.execute(delete(QuotaCount).where(QuotaCount.window_started_at < cutoff))
            return int(result.rowcount)  # type: ignore[attr-defined]
