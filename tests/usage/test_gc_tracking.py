"""With tens of thousands of keys in use, what the bookkeeping holds per key must not be walked by the
garbage collector's frequent passes: each pass of the young generations stops every request, and
objects with attributes (or lists) stay tracked for as long as they live, where a tuple of numbers
and strings is dropped from the collector's lists at its first pass (docs/PERFORMANCE.md)."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable

from starlette.testclient import TestClient

from tests.usage.test_recorder import NOW, MemoryUsageStore
from tests.usage.test_request_recorder import RecordingStore
from thotbot.ratelimit import _Windows
from thotbot.usage import UsageRecorder
from thotbot.usage.requests import RequestLogRecorder

KEYS = 2_000
AGENT = "acme-sync/2.3.1 (ops@acme.example)"


def _tracked(objects: Iterable[object]) -> int:
    gc.collect()
    return sum(gc.is_tracked(o) for o in objects)


def _use_keys(usage: UsageRecorder, requests: RequestLogRecorder) -> None:
    for n in range(3):
        for i in range(KEYS):
            at = NOW + n + i * 1e-4
            usage.record(f"key_{i}", at, AGENT, f"10.0.{i % 200}.{n}")
            requests.record(f"key_{i}", at, "GET", "/v1/version", 200, None, AGENT, 0.0004)


def test_the_recorders_windows_hold_nothing_the_collector_keeps_walking() -> None:
    usage = UsageRecorder(MemoryUsageStore())
    requests = RequestLogRecorder(RecordingStore(), clock=lambda: NOW)
    _use_keys(usage, requests)
    # The last requests, held as they came until ABSORB_EVERY of them are, counted now.
    usage._absorb()
    requests._absorb()

    agents, counts = usage._window.agents, requests._window.counts
    assert len(agents) == KEYS
    assert len(counts) == KEYS
    # Each entry of a key, day and User-Agent (and of a key, hour and endpoint) and its counts.
    assert _tracked([*agents, *agents.values(), *counts, *counts.values()]) == 0
    assert _tracked(usage._window.clients) == 0
    assert _tracked(usage._window.unitemised.values()) == 0
    # What the counts say is still right after the tuples replaced the objects.
    assert {seen[0] for seen in agents.values()} == {3}
    assert {count[0] for count in counts.values()} == {3}


def test_a_keys_rate_limit_window_starts_again_in_the_same_list() -> None:
    windows = _Windows()
    period = 60
    assert windows.hit("key_1", period, 30.0, 100) == (1, 60)
    first = windows._windows["key_1"]
    windows.hit("key_1", period, 31.0, 100)

    # The next period: counted from zero, in the list the key already had.
    assert windows.hit("key_1", period, 61.0, 100) == (1, 120)
    assert windows._windows["key_1"] is first
    assert windows.count("key_1", 61.5) == 1
    assert windows.count("key_1", 121.0) == 0


def test_every_window_of_a_period_shares_its_bounds() -> None:
    # With tens of thousands of keys in use, each request compares its window's end with the clock:
    # one int object for all of them stays in cache, where one a key was read cold each time.
    t0 = 1_800_000_000  # a multiple of 60, far above the small ints Python keeps one of each
    windows = _Windows()
    windows.hit("key/a", 60, t0 + 30.0, 100)
    windows.hit("key/b", 60, t0 + 45.0, 100)
    a, b = windows._windows["key/a"], windows._windows["key/b"]
    assert (a[0], a[3]) == (b[0], b[3]) == (t0 + 60, t0)
    assert a[0] is b[0]
    assert a[3] is b[3]

    windows.hit("key/a", 60, t0 + 61.0, 100)  # the next period: new bounds, counted from one
    assert (a[0], a[1], a[3]) == (t0 + 120, 1, t0 + 60)
    assert windows.count("key/b", t0 + 61.0) == 0


def test_the_slots_of_a_day_and_of_an_hour_share_its_number() -> None:
    # As the rate limiter's bounds: a request's slot is found by comparing its day (its hour) with
    # the stored slot's, and one int object for all of them is compared by identity, in cache.
    usage = UsageRecorder(MemoryUsageStore(), max_entries=1)
    requests = RequestLogRecorder(RecordingStore(), clock=lambda: NOW)
    for i in range(3):
        usage.record(f"key_{i}", NOW + i, AGENT, "192.0.2.1")
        requests.record(f"key_{i}", NOW + i, "GET", "/v1/version", 200, None, AGENT, 0.0004)
    usage._absorb()
    requests._absorb()
    window = usage._window
    days = [s[1] for s in window.agents] + [s[1] for s in window.unitemised] + [s[1] for s in window.clients]
    assert len(days) == 6  # one itemised, two over the cap, three clients
    assert days[0] > 256  # far above the small ints Python keeps one of each
    assert all(day is days[0] for day in days)
    hours = [slot[1] for slot in requests._window.counts]
    assert len(hours) == 3
    assert all(hour is hours[0] for hour in hours)


def test_the_server_walks_the_young_generation_in_small_passes(client: TestClient) -> None:
    """Replacing old tuples with new ones leaves Python's allocation count where it was, so its own
    young pass never comes: the running server's collector task walks them within moments."""
    entries = {f"key_{i}": (i, NOW) for i in range(KEYS)}
    gc.collect()  # the entries are old now, and untracked
    gc.disable()  # no pass but the server's: without its task, the new tuples stay tracked
    try:
        for n, key in enumerate(entries):
            # A request: one new tuple, one old one freed. Python's count is where it was, yet the
            # young generation grew by one tuple a key.
            entries[key] = (n, NOW + 1.0)
        deadline = time.monotonic() + 5
        while any(gc.is_tracked(value) for value in entries.values()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(gc.is_tracked(value) for value in entries.values())
    finally:
        gc.enable()
