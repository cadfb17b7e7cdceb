"""SQLSignInThrottle: slows password guessing per account and address, per address, and per account.

It lives in the database, not in process memory, so every server instance sees the same counts.
Three buckets count each attempt (docs/ACCOUNT_SECURITY.md, "The sign-in throttle"):

- one account from one client address: strict (5 free failures, then a doubling wait);
- one client address, whatever the account: 20 free failures, then a doubling wait;
- one account, from anywhere: loose (NIST SP 800-63B: at most 100 consecutive failures), so that
  guessing from another address cannot lock the owner out quickly, while a botnet still cannot
  guess without end. Passkey sign-in never goes through this throttle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from thotbot.core.clientaddr import address_bucket
from thotbot.core.dates import utcnow
from thotbot.storage.db import SessionFactory
from thotbot.storage.models import SignInThrottle

__all__ = [
    "ACCOUNT_RULE",
    "ADDRESS_RULE",
    "PAIR_RULE",
    "Attempt",
    "BucketRow",
    "SQLSignInThrottle",
    "ThrottleRule",
    "ThrottleRules",
    "bucket_for",
]


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    #: Failures that impose no wait; the next one starts the waiting.
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


#: A person mistyping their own password gets five tries for free, then 1 s, 2 s, 4 s ... 15 min.
PAIR_RULE = ThrottleRule(free_failures=5)
#: An office behind one address gets twenty, across all the accounts tried from it.
ADDRESS_RULE = ThrottleRule(free_failures=20)
#: The 100th consecutive failure, from any address, pauses password sign-in for the account
#: (NIST SP 800-63B 5.2.2: no more than 100); remembered for a day, so a slow botnet cannot start
#: over every hour. The pause is long, but the owner still signs in with a passkey.
ACCOUNT_RULE = ThrottleRule(
    free_failures=99,
    forget_after=timedelta(days=1),
    first_delay=timedelta(minutes=15),
    max_delay=timedelta(hours=1),
)

_ACCOUNT, _ADDRESS, _PAIR = "account", "address", "pair"


def bucket_for(kind: str, value: str) -> str:
    # Hashed so the table holds no email address that was merely typed into the form.
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()}"


def pair_bucket(email: str, address: str) -> str:
    """One account from one client address: the account's part first, so that every pair bucket
    of an account can be found (and forgotten) without knowing the addresses (80 characters)."""
    pair = hashlib.sha256(f"{email}\n{address}".encode()).hexdigest()[:40]
    return _pair_prefix(email) + pair


def _pair_prefix(email: str) -> str:
    return f"{_PAIR}:{hashlib.sha256(email.encode()).hexdigest()[:32]}:"


@dataclass(frozen=True, slots=True)
class Attempt:
    """A password attempt as the throttle took it, before the password is checked."""

    #: Seconds to wait before trying again. Above 0, the attempt was refused and not counted:
    #: the password must not be checked.
    retry_after: int = 0
    #: The wait this attempt starts if its password is wrong (a right one clears it).
    wait_if_wrong: int = 0
    #: The refusal is the account's own limit (from any address): only a passkey signs in now.
    account_paused: bool = False
    #: When the password is wrong, this attempt is the one that paused the account's password
    #: sign-in: tell the owner (exactly one attempt per pause gets this).
    pauses_account: bool = False
    #: Until when the account's password sign-in is paused, when it is.
    paused_until: datetime | None = None

    @property
    def allowed(self) -> bool:
        return self.retry_after == 0


class BucketRow(Protocol):
    """One bucket's counts, as a store keeps them (a table row, or an object in memory)."""

    bucket: str
    failures: int
    last_failure_at: datetime
    blocked_until: datetime | None


class ThrottleRules:
    """The three rules and what they decide on a bucket's counts, whatever keeps the counts:
    SQLSignInThrottle and the in-memory throttle share it, so they decide alike."""

    def __init__(
        self,
        *,
        pair_rule: ThrottleRule = PAIR_RULE,
        address_rule: ThrottleRule = ADDRESS_RULE,
        account_rule: ThrottleRule = ACCOUNT_RULE,
    ) -> None:
        self.pair_rule = pair_rule
        self.address_rule = address_rule
        self.account_rule = account_rule

    def _rules(self, email: str, ip_address: str | None) -> dict[str, ThrottleRule]:
        address = _address(ip_address)
        return {
            pair_bucket(email, address): self.pair_rule,
            bucket_for(_ADDRESS, address): self.address_rule,
            bucket_for(_ACCOUNT, email): self.account_rule,
        }

    def _reserve(
        self, rows: Sequence[BucketRow], rules: dict[str, ThrottleRule], email: str, now: datetime
    ) -> Attempt:
        """Refuse the attempt while a bucket waits (counting nothing), else count it in each."""
        waits = {
            row.bucket: row.blocked_until - now
            for row in rows
            if row.blocked_until and row.blocked_until > now
        }
        if waits:
            account = bucket_for(_ACCOUNT, email)
            return Attempt(
                retry_after=max(_ceil_seconds(w) for w in waits.values()),
                account_paused=account in waits,
                paused_until=_until(rows, account) if account in waits else None,
            )
        return self._count(rows, rules, email, now)

    def _count(
        self, rows: Sequence[BucketRow], rules: dict[str, ThrottleRule], email: str, now: datetime
    ) -> Attempt:
        account = bucket_for(_ACCOUNT, email)
        waits, pauses = [], False
        for row in rows:
            before = row.failures if now - row.last_failure_at <= rules[row.bucket].forget_after else 0
            wait = _fail(row, rules[row.bucket], now)
            waits.append(wait)
            if row.bucket == account and wait and not rules[row.bucket].delay(before):
                pauses = True
        return Attempt(
            wait_if_wrong=max(_ceil_seconds(w) for w in waits),
            pauses_account=pauses,
            paused_until=_until(rows, account) if pauses else None,
        )

    @staticmethod
    def _address_of(ip_address: str | None) -> str:
        return bucket_for(_ADDRESS, _address(ip_address))

    @staticmethod
    def _account_of(email: str) -> tuple[str, str]:
        """The account's own bucket, and the prefix of its buckets per client address."""
        return bucket_for(_ACCOUNT, email), _pair_prefix(email)

    @staticmethod
    def _retry_after(row: BucketRow | None, now: datetime) -> int:
        if row is None or not _waiting(row, now):
            return 0
        assert row.blocked_until is not None
        return _ceil_seconds(row.blocked_until - now)

    def _fail_address(self, row: BucketRow, now: datetime) -> int:
        return _ceil_seconds(_fail(row, self.address_rule, now))

    def _oldest_kept(self, now: datetime) -> datetime:
        """Counts whose last failure is older than this are forgotten by every rule."""
        rules = (self.pair_rule, self.address_rule, self.account_rule)
        return now - max(rule.forget_after for rule in rules)


class SQLSignInThrottle(ThrottleRules):
    def __init__(
        self,
        sessions: SessionFactory,
        *,
        pair_rule: ThrottleRule = PAIR_RULE,
        address_rule: ThrottleRule = ADDRESS_RULE,
        account_rule: ThrottleRule = ACCOUNT_RULE,
    ) -> None:
        super().__init__(pair_rule=pair_rule, address_rule=address_rule, account_rule=account_rule)
        self._sessions = sessions

    def reserve(self, email: str, ip_address: str | None, *, now: datetime | None = None) -> Attempt:
        """Take one password attempt, in one transaction, before the password is checked.

        When a bucket is waiting the attempt is refused and nothing is counted. Otherwise it counts
        as a failure in every bucket at once; record_success takes that back when the password is
        right. Checking and counting are one atomic step, so concurrent guesses cannot slip past
        the limit between someone's check and their count.
        """
        now = now or utcnow()
        rules = self._rules(email, ip_address)
        with self._sessions.begin() as session:
            return self._reserve(_locked(session, sorted(rules), now), rules, email, now)

    def record_success(self, email: str, ip_address: str | None, *, now: datetime | None = None) -> None:
        """A right password clears the account's counts (from anywhere and from this address)
        and gives the address back the attempt reserved for it, but no more: one good account
        must not reset the slowing of guesses at every other account from the same address."""
        now = now or utcnow()
        rules = self._rules(email, ip_address)
        address = self._address_of(ip_address)
        with self._sessions.begin() as session:
            _locked(session, sorted(rules), now)
            session.execute(
                delete(SignInThrottle).where(SignInThrottle.bucket.in_([b for b in rules if b != address]))
            )
            remaining = SignInThrottle.failures - 1
            session.execute(
                update(SignInThrottle)
                .where(SignInThrottle.bucket == address, SignInThrottle.failures > 0)
                .values(
                    failures=remaining,
                    blocked_until=case(
                        (remaining <= self.address_rule.free_failures, None),
                        else_=SignInThrottle.blocked_until,
                    ),
                )
            )

    def forget_account(self, email: str) -> None:
        """Clear every count of the account, from anywhere and from each address (a password reset
        proved the mailbox); the addresses' own counts stay, since they span other accounts."""
        account, pairs = self._account_of(email)
        with self._sessions.begin() as session:
            session.execute(
                delete(SignInThrottle).where(
                    (SignInThrottle.bucket == account)
                    | SignInThrottle.bucket.startswith(pairs, autoescape=True)
                )
            )

    def address_retry_after(self, ip_address: str | None, *, now: datetime | None = None) -> int:
        """Seconds this client address must wait, whatever the email (0: go ahead)."""
        if not ip_address:
            return 0
        now = now or utcnow()
        with self._sessions() as session:
            row = session.get(SignInThrottle, self._address_of(ip_address))
        return self._retry_after(row, now)

    def record_address_failure(self, ip_address: str | None, *, now: datetime | None = None) -> int:
        """Count a failure against the client address only: a sign-up for an email that has an
        account, so sign-up cannot be used to test many addresses quickly."""
        if not ip_address:
            return 0
        now = now or utcnow()
        with self._sessions.begin() as session:
            [row] = _locked(session, [self._address_of(ip_address)], now)
            return self._fail_address(row, now)

    def prune(self, *, now: datetime | None = None) -> int:
        now = now or utcnow()
        oldest = self._oldest_kept(now)
        with self._sessions.begin() as session:
            result = session.execute(
                delete(SignInThrottle).where(
                    SignInThrottle.last_failure_at < oldest,
                    (SignInThrottle.blocked_until.is_(None)) | (SignInThrottle.blocked_until < now),
                )
            )
            return int(result.rowcount)  # type: ignore[attr-defined]


def _address(ip_address: str | None) -> str:
    # Without a client address (a Unix socket), every such client shares one bucket.
    return address_bucket(ip_address) if ip_address else "unknown"


def _locked(session: Session, buckets: Sequence[str], now: datetime) -> list[SignInThrottle]:
    """The buckets' rows, created if missing, locked for this transaction.

    Writing first is what makes the check and the count one step: on PostgreSQL the upsert locks
    each row (in sorted order, so two transactions cannot deadlock); on SQLite a transaction whose
    first statement writes takes the database's write lock before it reads anything, as BEGIN
    IMMEDIATE would. Reading first instead lets two requests both see the old count.
    """
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(SignInThrottle).values(
        [{"bucket": b, "failures": 0, "last_failure_at": now, "blocked_until": None} for b in buckets]
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[SignInThrottle.bucket], set_={"failures": SignInThrottle.failures}
        )
    )
    rows = session.scalars(
        select(SignInThrottle).where(SignInThrottle.bucket.in_(buckets)).order_by(SignInThrottle.bucket)
    ).all()
    return list(rows)


def _fail(row: BucketRow, rule: ThrottleRule, now: datetime) -> timedelta:
    if now - row.last_failure_at > rule.forget_after:
        row.failures = 0
    row.failures += 1
    row.last_failure_at = now
    wait = rule.delay(row.failures)
    row.blocked_until = now + wait if wait else None
    return wait


def _waiting(row: BucketRow, now: datetime) -> bool:
    return row.blocked_until is not None and row.blocked_until > now


def _until(rows: Sequence[BucketRow], bucket: str) -> datetime | None:
    return next((row.blocked_until for row in rows if row.bucket == bucket), None)


def _ceil_seconds(delta: timedelta) -> int:
    seconds = delta.total_seconds()
    return int(seconds) + (seconds % 1 > 0)
