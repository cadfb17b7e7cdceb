"""The rate limits' shared counters, on every store backend."""

from __future__ import annotations

import pytest

from thotbot.services import Services
from thotbot.storage import RateWindowStore
from thotbot.storage.rate_windows import WindowHits

START = 1_800_000_000  # a multiple of 60
END = START + 60


@pytest.fixture
def windows(services: Services) -> RateWindowStore:
    return services.rate_windows


class TestRateWindowStore:
    def test_add_returns_the_totals_of_every_batch_so_far(self, windows: RateWindowStore) -> None:
        first = windows.add([WindowHits("key/a", START, END, 3), WindowHits("anon/h", START, END, 1)])
        second = windows.add([WindowHits("key/a", START, END, 2)])

        assert first == {("key/a", START): 3, ("anon/h", START): 1}
        assert second == {("key/a", START): 5}

    def test_windows_and_buckets_are_counted_apart(self, windows: RateWindowStore) -> None:
        windows.add([WindowHits("key/a", START, END, 3)])

        totals = windows.add([WindowHits("key/a", END, END + 60, 1), WindowHits("key/b", START, END, 1)])

        assert totals == {("key/a", END): 1, ("key/b", START): 1}

    def test_watched_windows_are_read_back_when_they_exist(self, windows: RateWindowStore) -> None:
        windows.add([WindowHits("key/a", START, END, 4)])

        totals = windows.add([], watch=[("key/a", START), ("key/never", START), ("key/a", END)])

        assert totals == {("key/a", START): 4}

    def test_a_batch_over_many_buckets(self, windows: RateWindowStore) -> None:
        batch = [WindowHits(f"anon/{n:032x}", START, END, n + 1) for n in range(1200)]

        totals = windows.add(batch)
        watched = windows.add([], watch=[(h.bucket, START) for h in batch])

        assert totals == watched == {(h.bucket, START): h.hits for h in batch}

    def test_prune_forgets_the_windows_that_ended(self, windows: RateWindowStore) -> None:
        windows.add([WindowHits("key/a", START, END, 1), WindowHits("key/a", END, END + 60, 2)])

        assert windows.prune(END) == 0
        assert windows.prune(END + 1) == 1

        assert windows.add([], watch=[("key/a", START), ("key/a", END)]) == {("key/a", END): 2}
