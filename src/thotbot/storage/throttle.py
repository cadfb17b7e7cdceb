"""SQLSignInThrottle: slows repeated failed sign-ins per account and per client address.

It lives in the database, not in process memory, so every server instance sees the same counts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from thotbot.storage.db import SessionFactory
from thotbot.storage.models import SignInThrottle, utcnow

__all__ = ["SQLSignInThrottle", "ThrottleRule", "bucket_for"]


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    #: Failures allowed before any waiting is imposed.
    free_failures: int
    #: Failures are forgotten once none happened for this long.
    forget_after: timedelta = timedelta(hours=1)
    #: The wait after the first failure past the free ones; it doubles with each further one.
    first_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(minutes=15)

    def delay(self, failures: int) -> timedelta:
        over = failures - self.free_failures
        if over <= 0:
            return timedelta(0)
        doubled: timedelta = self.first_delay * 2 ** min(over - 1, 20)
        return min(doubled, self.max_delay)


#: A person mistyping gets five tries for free; an office behind one address gets twenty.
ACCOUNT_RULE = ThrottleRule(free_failures=5)
ADDRESS_RULE = ThrottleRule(free_failures=20)


def bucket_for(kind: str, value: str) -> str:
    # Hashed so the table holds no email address that was merely typed into the form.
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()}"


class SQLSignInThrottle:
    def __init__(
        self,
        sessions: SessionFactory,
        *,
        account_rule: ThrottleRule = ACCOUNT_RULE,
        address_rule: ThrottleRule = ADDRESS_RULE,
    ) -> None:
        self._sessions = sessions
        self.account_rule = account_rule
        self.address_rule = address_rule

    def retry_after(self, email: str, ip_address: str | None, *, now: datetime | None = None) -> int:
        """Seconds to wait before this email address may be tried from this address (0: go ahead)."""
        now = now or utcnow()
        buckets = [b for b, _ in self._buckets(email, ip_address)]
        with self._sessions() as session:
            rows = session.scalars(select(SignInThrottle).where(SignInThrottle.bucket.in_(buckets))).all()
        waits = [row.blocked_until - now for row in rows if row.blocked_until and row.blocked_until > now]
        return max((_ceil_seconds(w) for w in waits), default=0)

    def record_failure(self, email: str, ip_address: str | None, *, now: datetime | None = None) -> int:
        """Count a failed sign-in; returns the seconds to wait before the next try (0: none)."""
        now = now or utcnow()
        waits = [self._fail(bucket, rule, now) for bucket, rule in self._buckets(email, ip_address)]
        return max((_ceil_seconds(w) for w in waits), default=0)

    def address_retry_after(self, ip_address: str | None, *, now: datetime | None = None) -> int:
        """Seconds this client address must wait, whatever the email (0: go ahead)."""
        if not ip_address:
            return 0
        now = now or utcnow()
        with self._sessions() as session:
            row = session.get(SignInThrottle, bucket_for("address", ip_address))
        if row is None or row.blocked_until is None or row.blocked_until <= now:
            return 0
        return _ceil_seconds(row.blocked_until - now)

    def record_address_failure(self, ip_address: str | None, *, now: datetime | None = None) -> int:
        """Count a failure against the client address only: a sign-up for an email that has an
        account, so sign-up cannot be used to test many addresses quickly."""
        if not ip_address:
            return 0
        return _ceil_seconds(
            self._fail(bucket_for("address", ip_address), self.address_rule, now or utcnow())
        )

    def record_success(self, email: str) -> None:
        """A correct password clears the account's count, never the address's: one good account
        must not reset the slowing for guesses at every other account from the same address."""
        with self._sessions.begin() as session:
            session.execute(
                delete(SignInThrottle).where(SignInThrottle.bucket == bucket_for("account", email))
            )

    def prune(self, *, now: datetime | None = None) -> int:
        now = now or utcnow()
        oldest = now - max(self.account_rule.forget_after, self.address_rule.forget_after)
        with self._sessions.begin() as session:
            result = session.execute(
                delete(SignInThrottle).where(
                    SignInThrottle.last_failure_at < oldest,
                    (SignInThrottle.blocked_until.is_(None)) | (SignInThrottle.blocked_until < now),
                )
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def _buckets(self, email: str, ip_address: str | None) -> list[tuple[str, ThrottleRule]]:
        buckets = [(bucket_for("account", email), self.account_rule)]
        if ip_address:
            buckets.append((bucket_for("address", ip_address), self.address_rule))
        return buckets

    def _fail(self, bucket: str, rule: ThrottleRule, now: datetime) -> timedelta:
        for attempt in range(2):
            try:
                with self._sessions.begin() as session:
                    row = session.get(SignInThrottle, bucket, with_for_update=True)
                    if row is None:
                        row = SignInThrottle(bucket=bucket, failures=0, last_failure_at=now)
                        session.add(row)
                    elif now - row.last_failure_at > rule.forget_after:
                        row.failures = 0
                    row.failures += 1
                    row.last_failure_at = now
                    wait = rule.delay(row.failures)
                    row.blocked_until = now + wait if wait else None
                    return wait
            except IntegrityError:
                # Another request inserted the same bucket first: count again on its row.
                if attempt:
                    raise
        raise AssertionError("unreachable")


def _ceil_seconds(delta: timedelta) -> int:
    seconds = delta.total_seconds()
    return int(seconds) + (seconds % 1 > 0)
