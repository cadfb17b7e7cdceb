"""SQLRequestLog: each key's recent requests and its requests per hour by endpoint and error code.

Written only by the request log's flush (usage/requests.py), in batches: the recent requests are
plain inserts and the hourly counts additive upserts (``INSERT ... ON CONFLICT DO UPDATE``), so any
number of instances write the same tables. Reads take the newest rows; trimming to the newest
``KEEP_PER_KEY`` per key and the 30-day retention are the flush's background work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, select
from sqlalchemy.orm import Session

from thotbot.storage.db import SessionFactory
from thotbot.storage.models import APIKey, KeyRequest, KeyRequestHour
from thotbot.storage.usage import _CHUNK, _execute_chunked, _insert, _table

__all__ = ["KEEP_PER_KEY", "ErrorGroup", "HourCount", "RequestEntry", "RequestLogBatch", "SQLRequestLog"]

#: The recent requests kept per key, in memory between flushes and in the database.
KEEP_PER_KEY = 200


@dataclass(frozen=True, slots=True)
class RequestEntry:
    """One request of a key, as recorded: the path never holds a query string or a key."""

    key_id: str
    at: datetime
    method: str
    path: str
    status: int
    #: The problem's code; None on success.
    code: str | None
    user_agent: str | None
    duration_us: int


@dataclass(frozen=True, slots=True)
class HourCount:
    key_id: str
    #: The hour's start, UTC.
    hour: datetime
    #: "METHOD /route/template", or "METHOD (other)" for a path no route declares.
    endpoint: str
    #: The problem's code; '' on success.
    code: str
    requests: int
    first_seen: datetime
    last_seen: datetime
    #: The last one seen.
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class RequestLogBatch:
    requests: Sequence[RequestEntry] = ()
    hours: Sequence[HourCount] = ()

    def key_ids(self) -> set[str]:
        return {r.key_id for r in self.requests} | {h.key_id for h in self.hours}


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    """A key's failed requests on one endpoint with one code, added up over some hours."""

    endpoint: str
    code: str
    requests: int
    last_seen: datetime


class SQLRequestLog:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def write(self, batch: RequestLogBatch) -> None:
        """Add a batch in one transaction; rows of keys that no longer exist are dropped."""
        with self._sessions.begin() as session:
            known = _existing_keys(session, batch.key_ids())
            requests = [r for r in batch.requests if r.key_id in known]
            if requests:
                params = [
                    {
                        "key_id": r.key_id,
                        "at": r.at,
                        "method": r.method,
                        "path": r.path,
                        "status": r.status,
                        "code": r.code,
                        "user_agent": r.user_agent,
                        "duration_us": r.duration_us,
                    }
                    for r in requests
                ]
                _execute_chunked(session, _table(KeyRequest).insert(), params)
            self._upsert_hours(session, [h for h in batch.hours if h.key_id in known])

    def recent(self, key_id: str, limit: int = KEEP_PER_KEY) -> list[RequestEntry]:
        """The key's newest requests, newest first, at most ``limit`` (and KEEP_PER_KEY)."""
        with self._sessions() as session:
            rows = session.scalars(
                select(KeyRequest)
                .where(KeyRequest.key_id == key_id)
                .order_by(KeyRequest.at.desc(), KeyRequest.id.desc())
                .limit(max(0, min(limit, KEEP_PER_KEY)))
            )
            return [
                RequestEntry(r.key_id, r.at, r.method, r.path, r.status, r.code, r.user_agent, r.duration_us)
                for r in rows
            ]

    def errors(self, key_id: str, since: datetime) -> list[ErrorGroup]:
        """The key's failed requests in the hours from ``since``'s on, by endpoint and code; the
        most frequent first."""
        with self._sessions() as session:
            total = func.sum(KeyRequestHour.requests)
            last = func.max(KeyRequestHour.last_seen)
            rows = session.execute(
                select(KeyRequestHour.endpoint, KeyRequestHour.code, total, last)
                .where(
                    KeyRequestHour.key_id == key_id,
                    KeyRequestHour.hour >= _hour(since),
                    KeyRequestHour.code != "",
                )
                .group_by(KeyRequestHour.endpoint, KeyRequestHour.code)
                .order_by(total.desc(), last.desc(), KeyRequestHour.endpoint, KeyRequestHour.code)
            )
            return [ErrorGroup(endpoint, code, int(n), seen) for endpoint, code, n, seen in rows]

    def trim(self, key_ids: Iterable[str], keep: int = KEEP_PER_KEY) -> int:
        """Delete all but each key's newest ``keep`` requests (by arrival); return how many went."""
        ordered = sorted(set(key_ids))
        deleted = 0
        with self._sessions.begin() as session:
            connection = session.connection()
            for start in range(0, len(ordered), _CHUNK):
                newest_first = (KeyRequest.at.desc(), KeyRequest.id.desc())
                ranked = (
                    select(
                        KeyRequest.id,
                        func.row_number()
                        .over(partition_by=KeyRequest.key_id, order_by=newest_first)
                        .label("n"),
                    )
                    .where(KeyRequest.key_id.in_(ordered[start : start + _CHUNK]))
                    .subquery()
                )
                stmt = delete(KeyRequest).where(
                    KeyRequest.id.in_(select(ranked.c.id).where(ranked.c.n > keep))
                )
                deleted += connection.execute(stmt).rowcount
        return deleted

    def prune(self, before: datetime) -> int:
        """Delete requests that arrived before ``before`` and the hours that ended before it."""
        with self._sessions.begin() as session:
            connection = session.connection()
            deleted = connection.execute(delete(KeyRequest).where(KeyRequest.at < before)).rowcount
            deleted += connection.execute(
                delete(KeyRequestHour).where(KeyRequestHour.hour < _hour(before))
            ).rowcount
            return deleted

    @staticmethod
    def _upsert_hours(session: Session, rows: list[HourCount]) -> None:
        if not rows:
            return
        table = _table(KeyRequestHour)
        stmt = _insert(session, table)
        new = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["key_id", "hour", "endpoint", "code"],
            set_={
                "requests": table.c.requests + new.requests,
                "first_seen": case(
                    (table.c.first_seen <= new.first_seen, table.c.first_seen), else_=new.first_seen
                ),
                "last_seen": case(
                    (table.c.last_seen >= new.last_seen, table.c.last_seen), else_=new.last_seen
                ),
                "user_agent": case(
                    (table.c.last_seen > new.last_seen, table.c.user_agent), else_=new.user_agent
                ),
            },
        )
        params: list[dict[str, Any]] = [
            {
                "key_id": h.key_id,
                "hour": h.hour,
                "endpoint": h.endpoint,
                "code": h.code,
                "requests": h.requests,
                "first_seen": h.first_seen,
                "last_seen": h.last_seen,
                "user_agent": h.user_agent,
            }
            # In key order, as every writer: two instances' upserts never wait on each other in turn.
            for h in sorted(rows, key=lambda h: (h.key_id, h.hour, h.endpoint, h.code))
        ]
        _execute_chunked(session, stmt, params)


def _existing_keys(session: Session, key_ids: set[str]) -> set[str]:
    ordered = sorted(key_ids)
    known: set[str] = set()
    for start in range(0, len(ordered), _CHUNK):
        known.update(session.scalars(select(APIKey.id).where(APIKey.id.in_(ordered[start : start + _CHUNK]))))
    return known


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)
