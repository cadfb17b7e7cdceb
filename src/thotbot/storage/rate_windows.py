"""SQLRateWindowStore: the API rate limits' counters, shared through the database.

When several processes serve one database without Redis, each counts its requests in memory
(thotbot.ratelimit) and, every 100 ms, adds what it counted to the rows here in one batch, reading
back what every process has counted: one ``INSERT ... ON CONFLICT DO UPDATE SET hits = hits +
excluded.hits ... RETURNING`` on SQLite and PostgreSQL alike, so no request waits for the database
and concurrent batches add up instead of overwriting each other. Rows are keyed by bucket (a key
id, or an address already hashed by the limiter: no raw address is stored) and by the start of a
window aligned to the clock, which every process computes alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import Table, delete, select, text, tuple_
from sqlalchemy.dialects import sqlite

from thotbot.storage.db import SessionFactory
from thotbot.storage.models import RateLimitWindow

__all__ = ["SQLRateWindowStore", "WindowHits", "WindowId"]

_CHUNK = 500
_UNNEST_UPSERT = text(
    "INSERT INTO rate_limit_windows (bucket, window_start, expires_at, hits)"
    " SELECT * FROM unnest(CAST(:buckets AS varchar[]), CAST(:starts AS bigint[]),"
    " CAST(:ends AS bigint[]), CAST(:hits AS bigint[]))"
    " ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limit_windows.hits + excluded.hits"
    " RETURNING bucket, window_start, hits"
)

#: (bucket, window start in Unix seconds)
WindowId = tuple[str, int]


class WindowHits(NamedTuple):
    """Hits one process counted in a window since it last shared them."""

    bucket: str
    #: Unix seconds, a multiple of the limit's period.
    window_start: int
    #: Unix seconds: when the window ends.
    expires_at: int
    hits: int


class SQLRateWindowStore:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def add(self, hits: Sequence[WindowHits], watch: Sequence[WindowId] = ()) -> dict[WindowId, int]:
        """Add each count to its window's row (made when missing), in one transaction; return the
        total of each of those windows and of each ``watch`` window that has a row."""
        table = RateLimitWindow.__table__
        assert isinstance(table, Table)
        totals: dict[WindowId, int] = {}
        with self._sessions.begin() as session:
            connection = session.connection()
            if hits and connection.dialect.name == "postgresql":
                # One short statement, the same every time, with four arrays: a batch of thousands of
                # windows costs PostgreSQL one plan and psycopg one conversion, where one VALUES row
                # a window made a new statement of every batch (a fifth of the process's CPU with
                # 50,000 keys in use, docs/PERFORMANCE.md).
                # Sorted: two batches lock their rows in one order, so they wait, never deadlock.
                ordered = sorted(hits)
                added = connection.execute(
                    _UNNEST_UPSERT,
                    {
                        "buckets": [h.bucket for h in ordered],
                        "starts": [h.window_start for h in ordered],
                        "ends": [h.expires_at for h in ordered],
                        "hits": [h.hits for h in ordered],
                    },
                )
                for bucket, window_start, total in added:
                    totals[bucket, window_start] = total
            elif hits:
                insert = sqlite.insert(table)
                stmt = insert.on_conflict_do_update(
                    index_elements=["bucket", "window_start"],
                    set_={"hits": table.c.hits + insert.excluded.hits},
                ).returning(table.c.bucket, table.c.window_start, table.c.hits)
                rows = [h._asdict() for h in sorted(hits)]
                for start in range(0, len(rows), _CHUNK):
                    for bucket, window_start, total in connection.execute(stmt, rows[start : start + _CHUNK]):
                        totals[bucket, window_start] = total
            columns = (table.c.bucket, table.c.window_start)
            for start in range(0, len(watch), _CHUNK):
                found = select(*columns, table.c.hits).where(
                    tuple_(*columns).in_(watch[start : start + _CHUNK])
                )
                for bucket, window_start, total in connection.execute(found):
                    totals[bucket, window_start] = total
        return totals

    def prune(self, ended_before: int) -> int:
        """Delete the windows that ended before ``ended_before`` (Unix seconds)."""
        with self._sessions.begin() as session:
            result = session.execute(delete(RateLimitWindow).where(RateLimitWindow.expires_at < ended_before))
            return int(result.rowcount)  # type: ignore[attr-defined]
