"""The security log: who did what to an account, when, from where; folded, paged and pruned."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.orm import Session

from thotbot.core.dates import utcnow
from thotbot.core.redaction import redact, redact_cut
from thotbot.storage import LogEntry
from thotbot.storage.db import SessionFactory
from thotbot.storage.models import SecurityEvent

__all__ = [
    "FOLD_WINDOW",
    "MAX_USER_AGENT",
    "PAGE_SIZE",
    "Cursor",
    "LogPage",
    "SQLSecurityLog",
    "SecurityEventRecord",
    "add_entry",
    "page_of",
    "parse_cursor",
    "stored_entry",
]

#: Repeats of one refusal within this long of its first are one row (a count and the last time).
FOLD_WINDOW = timedelta(hours=1)
PAGE_SIZE = 50
#: The ``user_agent`` column's length: longer ones are cut to it.
MAX_USER_AGENT = 512
_MAX_CURSOR = 64


@dataclass(frozen=True, slots=True)
class SecurityEventRecord:
    id: int
    account_id: str | None
    action: str
    actor: str
    key_id: str | None
    detail: str
    ip_address: str | None
    user_agent: str | None
    created_at: datetime
    #: More than 1 for a folded refusal, whose first time is ``created_at`` and last ``last_at``.
    count: int = 1
    last_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Cursor:
    """A place in an account's log: rows sort by (created_at, id), newest first."""

    created_at: datetime
    id: int

    def __str__(self) -> str:
        micros = int((self.created_at - _EPOCH) / timedelta(microseconds=1))
        return f"{micros}.{self.id}"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_cursor(value: str) -> Cursor | None:
    """The cursor a page link carries, or None when it is not one (the caller says so)."""
    if not value or len(value) > _MAX_CURSOR or not value.isascii():
        return None
    micros, _, ident = value.partition(".")
    if not micros.isdigit() or not ident.isdigit():
        return None
    try:
        return Cursor(_EPOCH + timedelta(microseconds=int(micros)), int(ident))
    except OverflowError:
        return None


@dataclass(frozen=True, slots=True)
class LogPage:
    events: list[SecurityEventRecord]
    #: The cursors for the newer and older pages; None where there is nothing more that way.
    newer: Cursor | None
    older: Cursor | None


class SQLSecurityLog:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def record(
        self,
        account_id: str | None,
        action: str,
        *,
        actor: str,
        key_id: str | None = None,
        detail: str = "",
        ip_address: str | None = None,
        user_agent: str | None = None,
        fold: bool = False,
        now: datetime | None = None,
    ) -> None:
        """Write one event. With ``fold``, a repeat of the same event within FOLD_WINDOW of its
        first only counts on that row (and moves its last time, address and User-Agent), so a
        flood of refusals is one row per hour, however long, and cannot push other events away.
        """
        entry = LogEntry(account_id, action, actor, key_id, detail, ip_address, user_agent)
        event = _event(entry, now or utcnow())
        with self._sessions.begin() as session:
            if fold and account_id is not None and _fold(session, event):
                return
            session.add(event)

    def count_since(self, account_id: str, action: str, since: datetime) -> tuple[int, datetime | None]:
        """How many ``action`` events the account has had since then, and when the first was."""
        with self._sessions() as session:
            times = session.scalars(
                select(SecurityEvent.created_at)
                .where(
                    SecurityEvent.account_id == account_id,
                    SecurityEvent.action == action,
                    SecurityEvent.created_at > since,
                )
                .order_by(SecurityEvent.created_at)
            ).all()
        return len(times), (times[0] if times else None)

    def list_for_account(self, account_id: str, limit: int = 100) -> list[SecurityEventRecord]:
        return self.page(account_id, limit=limit).events

    def page(
        self,
        account_id: str,
        *,
        before: Cursor | None = None,
        after: Cursor | None = None,
        limit: int = PAGE_SIZE,
    ) -> LogPage:
        """One page of the account's log, newest first: the newest, older than ``before`` or
        newer than ``after`` (keyset paging: stable while new events arrive)."""
        key = (SecurityEvent.created_at, SecurityEvent.id)
        query = select(SecurityEvent).where(SecurityEvent.account_id == account_id)
        if after is not None:
            query = query.where(_after(after)).order_by(*key)
        else:
            if before is not None:
                query = query.where(_before(before))
            query = query.order_by(*(column.desc() for column in key))
        with self._sessions() as session:
            rows = [_record(r) for r in session.scalars(query.limit(limit + 1))]
        return page_of(rows, limit=limit, before=before, after=after)

    def prune(self, keep_days: int, *, now: datetime | None = None) -> int:
        """Delete events older than ``keep_days`` days (by their last time); returns how many."""
        cutoff = (now or utcnow()) - timedelta(days=keep_days)
        with self._sessions.begin() as session:
            result = session.execute(
                delete(SecurityEvent).where(
                    SecurityEvent.created_at < cutoff,
                    or_(SecurityEvent.last_at.is_(None), SecurityEvent.last_at < cutoff),
                )
            )
            return int(result.rowcount)  # type: ignore[attr-defined]


def add_entry(session: Session, entry: LogEntry) -> None:
    """Write ``entry`` in the caller's transaction: it commits, or rolls back, with the change it reports."""
    session.add(_event(entry, utcnow()))


def stored_entry(entry: LogEntry) -> LogEntry:
    """``entry`` as any security log may keep it: every text a client could have put key material
    in, redacted in any encoding, and the User-Agent cut to its column (the SQL and memory logs alike)."""
    return dataclasses.replace(
        entry,
        actor=redact(entry.actor),
        detail=redact(entry.detail),
        user_agent=redact_cut(entry.user_agent, MAX_USER_AGENT) if entry.user_agent else None,
    )


def _event(entry: LogEntry, now: datetime) -> SecurityEvent:
    entry = stored_entry(entry)
    return SecurityEvent(
        account_id=entry.account_id,
        action=entry.action,
        actor=entry.actor,
        key_id=entry.key_id,
        detail=entry.detail,
        ip_address=entry.ip_address,
        user_agent=entry.user_agent,
        created_at=now,
        count=1,
    )


def page_of(
    rows: list[SecurityEventRecord], *, limit: int, before: Cursor | None, after: Cursor | None
) -> LogPage:
    """The page made of the first ``limit + 1`` rows a page query found: oldest first when paging
    ``after`` a cursor, newest first otherwise (the extra row only tells there is more)."""
    more = len(rows) > limit
    rows = rows[:limit]
    if after is not None:
        rows.reverse()
        newer_more, older_more = more, True
    else:
        newer_more, older_more = before is not None, more
    first = _cursor(rows[0]) if rows and newer_more else None
    last = _cursor(rows[-1]) if rows and older_more else None
    return LogPage(rows, newer=first, older=last)


def _fold(session: Session, event: SecurityEvent) -> bool:
    """Count ``event`` on the row of its first occurrence within FOLD_WINDOW, if there is one."""
    # One UPDATE, no read first: two instances folding at once both count. Two that both find
    # nothing insert two rows, which stays bounded (and rare).
    target = (
        select(SecurityEvent.id)
        .where(
            SecurityEvent.account_id == event.account_id,
            SecurityEvent.action == event.action,
            SecurityEvent.actor == event.actor,
            SecurityEvent.key_id.is_(None) if event.key_id is None else SecurityEvent.key_id == event.key_id,
            SecurityEvent.detail == event.detail,
            SecurityEvent.created_at > event.created_at - FOLD_WINDOW,
        )
        .order_by(SecurityEvent.created_at.desc(), SecurityEvent.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    result = session.execute(
        update(SecurityEvent)
        .where(SecurityEvent.id == target)
        .values(
            count=SecurityEvent.count + 1,
            last_at=event.created_at,
            ip_address=event.ip_address,
            user_agent=event.user_agent,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _before(cursor: Cursor) -> ColumnElement[bool]:
    return or_(
        SecurityEvent.created_at < cursor.created_at,
        and_(SecurityEvent.created_at == cursor.created_at, SecurityEvent.id < cursor.id),
    )


def _after(cursor: Cursor) -> ColumnElement[bool]:
    return or_(
        SecurityEvent.created_at > cursor.created_at,
        and_(SecurityEvent.created_at == cursor.created_at, SecurityEvent.id > cursor.id),
    )


def _cursor(record: SecurityEventRecord) -> Cursor:
    return Cursor(record.created_at, record.id)


def _record(r: SecurityEvent) -> SecurityEventRecord:
    return SecurityEventRecord(
        id=r.id,
        account_id=r.account_id,
        action=r.action,
        actor=r.actor,
        key_id=r.key_id,
        detail=r.detail,
        ip_address=r.ip_address,
        user_agent=r.user_agent,
        created_at=r.created_at,
        count=r.count,
        last_at=r.last_at,
    )
