"""Dates, pure: the clock in UTC, the ISO 8601 form the API writes, and parsing the dates people give us."""

from __future__ import annotations

from datetime import UTC, datetime

from thotbot.core.errors import ValidationFailed

__all__ = ["iso", "parse_expiry", "utcnow"]


def utcnow() -> datetime:
    """Now, timezone-aware in UTC: every time the code stores or compares."""
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with a ``Z`` for UTC, as the API and the CLI's JSON write times; None stays None."""
    return value.isoformat().replace("+00:00", "Z") if value else None


def parse_expiry(value: object, now: datetime, *, field: str = "expires_at") -> datetime | None:
    """An ISO 8601 time in the future (UTC when no zone is given), or None for 'never expires'."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationFailed(f"'{field}' must be an ISO 8601 date-time string or null.", field=field)
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValidationFailed(
            f"'{field}' is not an ISO 8601 date or date-time, such as 2027-01-31 or 2027-01-31T12:00:00Z.",
            field=field,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when <= now:
        raise ValidationFailed(f"'{field}' must be in the future.", field=field)
    try:
        return when.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is past the year 9999 in UTC
        raise ValidationFailed(f"'{field}' is too far in the future.", field=field) from None
