"""storage/usage.py's in_key_order: the order every writer takes rows in (so that two instances lock
rows in one order and never deadlock) must be exactly sorted()'s, found a cheaper way."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from thotbot.storage.usage import in_key_order

KEY_IDS = st.sampled_from([f"key_{n:02x}" for n in range(40)]) | st.text(max_size=6)
DAYS = st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 1, 5))


@given(st.sets(st.tuples(KEY_IDS, DAYS), max_size=600))
def test_it_orders_day_slots_as_sorted_does(slots: set[tuple[str, date]]) -> None:
    assert in_key_order(slots) == sorted(slots)


@given(st.sets(st.tuples(KEY_IDS, st.sampled_from(["", "a", "b/1"]), st.binary(max_size=2)), max_size=600))
def test_it_orders_longer_slots_as_sorted_does(slots: set[tuple[str, str, bytes]]) -> None:
    assert in_key_order(slots) == sorted(slots)
