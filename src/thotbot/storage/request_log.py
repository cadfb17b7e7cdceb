"""SQLRequestLog: each key's recent requests and its requests per hour by endpoint and error code.

Written only by the request log's flush (usage/requests.py), in batches: the recent requests are
plain inserts and the hourly counts additive upserts (``INSERT ... ON CONFLICT DO UPDATE``), so any
number of instances write the same tables. Reads take the newest rows; trimming to the newest
``KEEP_PER_KEY`` per key and the 30-day retention are the flush's background work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, select, text
from sqlalchemy.orm import Session

from thotbot.storage.db import SessionFactory
from thotbot.storage.models import KeyRequest, KeyRequestHour
from thotbot.storage.pacing import pace, stepped
from thotbot.storage.usage import (
    _CHUNK,
    _Column,
    _execute_chunked,
    _execute_unnest,
    _existing_keys,
    _insert,
    _plain,
    _postgresql,
    _table,
    _texts,
    _times,
    in_key_order,
)

# PostgreSQL: one constant statement a table and 5,000 rows, the columns sent as arrays, as the usage
# flush writes (storage/usage.py says why); with tens of thousands of keys in use, one row per
# statement (executemany) cost the flush most of its time.
_PG_REQUESTS = text(
    "INSERT INTO key_requests (key_id, at, method, path, status, code, user_agent, duration_us)"
    " SELECT * FROM unnest(CAST(:key_id AS varchar[]), CAST(:at AS timestamptz[]),"
    " CAST(:method AS varchar[]), CAST(:path AS varchar[]), CAST(:status AS smallint[]),"
    " CAST(:code AS varchar[]), CAST(:user_agent AS varchar[]), CAST(:duration_us AS integer[]))"
)
_PG_HOURS = text(
    "INSERT INTO key_request_hours"
    " (key_id, hour, endpoint, code, requests, first_seen, last_seen, user_agent)"
    " SELECT * FROM unnest(CAST(:key_id AS varchar[]), CAST(:hour AS timestamptz[]),"
    " CAST(:endpoint AS varchar[]), CAST(:code AS varchar[]), CAST(:requests AS bigint[]),"
    " CAST(:first_seen AS timestamptz[]), CAST(:last_seen AS timestamptz[]), CAST(:user_agent AS varchar[]))"
    " ON CONFLICT (key_id, hour, endpoint, code) DO UPDATE"
    " SET requests = key_request_hours.requests + excluded.requests,"
    " first_seen = LEAST(key_request_hours.first_seen, excluded.first_seen),"
    " user_agent = CASE WHEN key_request_hours.last_seen > excluded.last_seen"
    " THEN key_request_hours.user_agent ELSE excluded.user_agent END,"
    " last_seen = GREATEST(key_request_hours.last_seen, excluded.last_seen)"
)

#: Each column of a batch and how its values are written as a PostgreSQL array (storage/usage.py);
#: the names are the rows' fields and the tables' columns alike.
_REQUEST_ARRAYS: dict[str, Callable[[Any], _Column]] = {
    "key_id": _texts,
    "at": _times,
    "method": _texts,
    "path": _texts,
    "status": _plain,
    "code": _texts,
    "user_agent": _texts,
    "duration_us": _plain,
}
_HOUR_ARRAYS: dict[str, Callable[[Any], _Column]] = {
    "key_id": _texts,
    "hour": _times,
    "endpoint": _texts,
    "code": _texts,
    "requests": _plain,
    "first_seen": _times,
    "last_seen": _times,
    "user_agent": _texts,
}

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

    @property
    def slot(self) -> tuple[str, datetime, str, str]:
        """The row's primary key: one row a key, hour, endpoint and code."""
        return (self.key_id, self.hour, self.endpoint, self.code)

    def plus(self, other: HourCount) -> HourCount:
        """This row and another of the same slot as one, as the upsert adds them: counts added,
        the earliest first and the latest last seen, and the User-Agent seen last (``other``'s
        when they tie)."""
        return dataclasses.replace(
            other,
            requests=self.requests + other.requests,
            first_seen=min(self.first_seen, other.first_seen),
            last_seen=max(self.last_seen, other.last_seen),
            user_agent=self.user_agent if self.last_seen > other.last_seen else other.user_agent,
        )


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
            requests = [r for r in stepped(batch.requests) if r.key_id in known]
            if requests and _postgresql(session):
                _execute_unnest(session.connection(), _PG_REQUESTS, _arrays(requests, _REQUEST_ARRAYS))
            elif requests:
                params = [{name: getattr(r, name) for name in _REQUEST_ARRAYS} for r in stepped(requests)]
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
        ordered = in_key_order(set(key_ids), key_id=str)
        deleted = 0
        with self._sessions.begin() as session:
            connection = session.connection()
            for start in range(0, len(ordered), _CHUNK):
                pace()
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
        # One row a conflict key (PostgreSQL refuses to update a row twice in one INSERT), in key
        # order, as every writer: two instances' upserts never wait on each other in turn.
        merged: dict[tuple[str, datetime, str, str], HourCount] = {}
        for h in stepped(rows):
            seen = merged.get(h.slot)
            merged[h.slot] = h if seen is None else seen.plus(h)
        rows = [merged[slot] for slot in in_key_order(merged)]
        if _postgresql(session):
            _execute_unnest(session.connection(), _PG_HOURS, _arrays(rows, _HOUR_ARRAYS))
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
        params = [{name: getattr(h, name) for name in _HOUR_ARRAYS} for h in stepped(rows)]
        _execute_chunked(session, stmt, params)


def _arrays(rows: Sequence[object], columns: dict[str, Callable[[Any], _Column]]) -> dict[str, _Column]:
    """The rows' columns, each as one PostgreSQL array parameter."""
    return {name: encode([getattr(row, name) for row in stepped(rows)]) for name, encode in columns.items()}


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)
