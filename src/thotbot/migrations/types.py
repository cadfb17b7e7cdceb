"""Column types for the revisions in versions/, frozen: copies of the models' types as they were when
the revisions were written, so that a revision keeps creating what it created then.

Revisions import from here (and from sqlalchemy and alembic), never from the rest of thotbot: the live
types in thotbot.storage.models may change with the code, a migration must not change its meaning.
Never edit a type here once a revision uses it; a changed type is a new one, beside the old.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, TypeDecorator
from sqlalchemy.engine import Dialect

__all__ = ["BigID", "UTCDateTime"]


class UTCDateTime(TypeDecorator[datetime]):
    """TIMESTAMP WITH TIME ZONE on PostgreSQL, DATETIME on SQLite; values stored in UTC, read aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Integer on SQLite (so it autoincrements as the rowid), BIGINT on PostgreSQL.
BigID = BigInteger().with_variant(Integer(), "sqlite")
