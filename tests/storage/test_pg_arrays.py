"""The PostgreSQL array elements the flushes write: exactly what the plain formatters wrote.

``_times``, ``_texts`` and ``_plain`` in storage/usage.py write each column of a batch as one
PostgreSQL array; they cache what repeats within a column (the part of a time up to its second,
a quoted User-Agent, a day). The reference functions here are the plain per-value formatters they
replace; any value, aware in any zone, must come out the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thotbot.storage.usage import _plain, _texts, _times

# astimezone(UTC) must not leave the datetime range.
_AWARE = st.datetimes(
    min_value=datetime(2, 1, 1),
    max_value=datetime(9998, 12, 31),
    timezones=st.one_of(
        st.just(UTC),
        st.timedeltas(
            min_value=timedelta(hours=-23, minutes=59), max_value=timedelta(hours=23, minutes=59)
        ).map(timezone),
        st.sampled_from([ZoneInfo("Europe/Paris"), ZoneInfo("America/St_Johns"), ZoneInfo("UTC")]),
    ),
)


def _reference_times(values: Sequence[datetime]) -> str:
    return "{" + ",".join('"' + v.astimezone(UTC).isoformat() + '"' for v in values) + "}"


def _reference_texts(values: Sequence[str | None]) -> str:
    return (
        "{"
        + ",".join(
            "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values
        )
        + "}"
    )


def _reference_plain(values: Sequence[int | date]) -> str:
    return "{" + ",".join(v.isoformat() if isinstance(v, date) else str(int(v)) for v in values) + "}"


def _array(column: object, size: int) -> str:
    return column.array(0, size)  # type: ignore[attr-defined, no-any-return]


@given(st.lists(_AWARE, max_size=20))
def test_times_are_written_as_isoformat_in_utc(values: list[datetime]) -> None:
    assert _array(_times(values), len(values)) == _reference_times(values)


@given(_AWARE, st.lists(st.integers(min_value=0, max_value=999_999), max_size=10))
def test_times_in_one_second_differ_only_in_their_microseconds(start: datetime, micros: list[int]) -> None:
    # The cached second's prefix is shared: each value must still carry its own microseconds.
    values = [start.replace(microsecond=m) for m in [0, 999_999, 1, *micros]]
    assert _array(_times(values), len(values)) == _reference_times(values)


def test_times_write_microseconds_0_and_999999_as_isoformat_does() -> None:
    values = [
        datetime(2026, 5, 1, 12, 0, 0, 0, tzinfo=UTC),
        datetime(2026, 5, 1, 12, 0, 0, 999_999, tzinfo=UTC),
        datetime(2026, 5, 1, 12, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 5, 1, 14, 0, 0, 10, tzinfo=timezone(timedelta(hours=2))),
    ]
    assert _array(_times(values), 4) == (
        '{"2026-05-01T12:00:00+00:00","2026-05-01T12:00:00.999999+00:00",'
        '"2026-05-01T12:00:00.000001+00:00","2026-05-01T12:00:00.000010+00:00"}'
    )


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        _times([datetime(2026, 5, 1, 12, 0, tzinfo=UTC), datetime(2026, 5, 1, 12, 0)])


@given(
    st.lists(
        st.one_of(st.none(), st.sampled_from(['a"b', "c\\d", "NULL", "", "x,y"]), st.text()), max_size=20
    )
)
def test_texts_are_quoted_as_before(values: list[str | None]) -> None:
    assert _array(_texts(values), len(values)) == _reference_texts(values)


@given(
    st.lists(
        st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.booleans(), st.dates()),
        max_size=20,
    )
)
def test_plain_values_are_written_as_before(values: list[int | date]) -> None:
    assert _array(_plain(values), len(values)) == _reference_plain(values)
