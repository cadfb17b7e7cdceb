from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from thotbot.core.dates import parse_expiry
from thotbot.core.errors import ValidationFailed

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("2027-01-31", datetime(2027, 1, 31, tzinfo=UTC)),
        ("2027-01-31T12:00:00", datetime(2027, 1, 31, 12, tzinfo=UTC)),
        ("2027-01-31T12:00:00Z", datetime(2027, 1, 31, 12, tzinfo=UTC)),
        ("2027-01-31t12:00:00z", datetime(2027, 1, 31, 12, tzinfo=UTC)),
        ("2027-01-31T12:00:00+05:00", datetime(2027, 1, 31, 7, tzinfo=UTC)),
        ("2027-01-31 12:00:00.250-02:30", datetime(2027, 1, 31, 14, 30, 0, 250_000, tzinfo=UTC)),
        ("  2027-01-31T12:00:00Z\n", datetime(2027, 1, 31, 12, tzinfo=UTC)),
        ("2026-06-01T12:00:01Z", datetime(2026, 6, 1, 12, 0, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_parse_expiry(raw: str | None, expected: datetime | None) -> None:
    result = parse_expiry(raw, NOW)

    assert result == expected
    if result is not None:
        assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "not an ISO 8601"),
        ("tomorrow", "not an ISO 8601"),
        ("2027-13-01", "not an ISO 8601"),
        ("2027-02-30", "not an ISO 8601"),
        ("31/01/2027", "not an ISO 8601"),
        ("2027-01-31T25:00", "not an ISO 8601"),
        ("2027-01-31T12:00:00+24:00", "not an ISO 8601"),
        ("x" * 100_000, "not an ISO 8601"),
        ("2026-06-01T12:00:00Z", "future"),
        ("2020-01-01", "future"),
        ("0001-01-01T00:00:00+01:00", "future"),
        # Past the last representable UTC instant: no overflow escapes as a 500.
        ("9999-12-31T23:59:59-01:00", "too far"),
        (20270131, "string"),
        (True, "string"),
        ([], "string"),
        ({"date": "2027-01-31"}, "string"),
    ],
)
def test_parse_expiry_refuses(raw: object, message: str) -> None:
    with pytest.raises(ValidationFailed) as exc_info:
        parse_expiry(raw, NOW)

    assert message in exc_info.value.detail
    assert exc_info.value.extra == {"field": "expires_at"}
    assert exc_info.value.status == 422
    assert len(exc_info.value.detail) < 200  # never echoes a long input


def test_parse_expiry_names_the_field() -> None:
    with pytest.raises(ValidationFailed) as exc_info:
        parse_expiry("soon", NOW, field="--expires-at")

    assert exc_info.value.detail.startswith("'--expires-at'")
    assert exc_info.value.extra == {"field": "--expires-at"}


def test_parse_expiry_converts_any_zone_to_utc() -> None:
    tz = timezone(timedelta(hours=-7))

    result = parse_expiry(datetime(2027, 1, 1, 17, tzinfo=tz).isoformat(), NOW)

    assert result == datetime(2027, 1, 2, 0, tzinfo=UTC)
    assert result is not None
    assert result.utcoffset() == timedelta(0)
