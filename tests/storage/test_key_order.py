"""storage/usage.py's in_key_order: the order every writer takes rows in (so that two instances lock
rows in one order and never deadlock) must be exactly sorted()'s, found in small steps (buckets by a
key id's first characters, each sorted on its own) so that no single call holds the interpreter long."""

from __future__ import annotations

from datetime import date
from operator import itemgetter

from hypothesis import given
from hypothesis import strategies as st

from thotbot.storage.usage import KEY_PREFIX, in_key_order

KEY_IDS = (
    st.sampled_from([f"key_{n:02x}" for n in range(40)])
    | st.text(max_size=KEY_PREFIX + 2)
    | st.from_regex(r"key_[0-9a-f]{1,4}", fullmatch=True)
)
DAYS = st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 1, 5))


@given(st.sets(st.tuples(KEY_IDS, DAYS), max_size=600))
def test_it_orders_day_slots_as_sorted_does(slots: set[tuple[str, date]]) -> None:
    assert in_key_order(slots) == sorted(slots)


@given(st.sets(st.tuples(KEY_IDS, st.sampled_from(["", "a", "b/1"]), st.binary(max_size=2)), max_size=600))
def test_it_orders_longer_slots_as_sorted_does(slots: set[tuple[str, str, bytes]]) -> None:
    assert in_key_order(slots) == sorted(slots)


@given(st.sets(KEY_IDS, max_size=600))
def test_it_orders_key_ids_themselves(key_ids: set[str]) -> None:
    assert in_key_order(key_ids, key_id=str) == sorted(key_ids)


@given(st.dictionaries(st.tuples(KEY_IDS, st.sampled_from(["", "a", "b/1"])), st.integers(), max_size=600))
def test_it_orders_items_by_their_key(agents: dict[tuple[str, str], int]) -> None:
    ordered = in_key_order(agents.items(), key=itemgetter(0), key_id=lambda item: item[0][0])
    assert ordered == sorted(agents.items(), key=itemgetter(0))


def test_no_bucket_holds_more_than_a_share_of_many_key_ids() -> None:
    key_ids = {f"key_{n:016x}" for n in range(0, 2**64, 2**64 // 50_000)}
    buckets: dict[str, int] = {}
    for key_id in key_ids:
        buckets[key_id[:KEY_PREFIX]] = buckets.get(key_id[:KEY_PREFIX], 0) + 1
    assert len(buckets) == 256
    assert max(buckets.values()) < 500
    assert in_key_order(key_ids, key_id=str) == sorted(key_ids)
