"""The recorders hold requests as they came and count them in a pass every ABSORB_EVERY requests
(docs/PERFORMANCE.md, ninth pass): request by request when they name many keys, together (Counter)
when they name a few. Either way, what the window holds after is what a pass after every single
request would hold (the reference here), caps included, across a day's or an hour's end too."""

from __future__ import annotations

from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

import thotbot.usage.recorder as usage_module
import thotbot.usage.requests as log_module
from tests.usage.test_recorder import NOW, MemoryUsageStore
from tests.usage.test_request_recorder import RecordingStore
from thotbot.storage.request_log import KEEP_PER_KEY
from thotbot.usage import UsageRecorder
from thotbot.usage.batching import ABSORB_EVERY, SPREAD
from thotbot.usage.recorder import DAY
from thotbot.usage.requests import HOUR, RequestLogRecorder

#: A pass every few requests in the property tests, so that a short list of requests makes several:
#: a pass of 16 whose requests name one or two keys counts them together, one of three or four
#: keys, request by request.
FEW = 16
assert SPREAD == 8

#: Which of the keys in use a request takes: with one or two in use, its passes count together.
KEYS = st.integers(min_value=0, max_value=3)
KEYS_IN_USE = st.integers(min_value=1, max_value=4)
AGENTS = st.sampled_from([None, "acme/1.0", "acme/2.0", "curl/8.5.0", "python-httpx/0.28"])
CLIENTS = st.sampled_from([None, "", "192.0.2.1", "192.0.2.2", "2001:db8::1"])
PATHS = st.sampled_from(["/v1/version", "/v1/me", "/v1/keys"])
CODES = st.sampled_from([None, None, "insufficient_scope", "rate_limited"])
#: Requests a few seconds apart at most, in order: the clock of one server.
STEPS = st.floats(min_value=0, max_value=3, allow_nan=False)
#: Around a day's (and so an hour's) end, or in the middle of one.
STARTS = st.sampled_from([NOW, (NOW // DAY + 1) * DAY - 20])

USAGE_REQUEST = st.tuples(KEYS, AGENTS, CLIENTS, STEPS)
LOG_REQUEST = st.tuples(KEYS, st.sampled_from(["GET", "POST"]), PATHS, CODES, AGENTS, STEPS)


def _usage(caps: dict[str, int]) -> UsageRecorder:
    recorder = UsageRecorder(MemoryUsageStore(), clock=lambda: NOW, **caps)
    recorder._salts = {int(NOW // DAY) + d: bytes([d + 2]) * 32 for d in range(-1, 3)}
    return recorder


def _usage_held(recorder: UsageRecorder) -> tuple[object, ...]:
    window = recorder._window
    return (
        window.agents,
        window.agents_per_key,
        window.unitemised,
        window.clients,
        window.overflow,
        window.clients_dropped,
    )


@settings(max_examples=100, deadline=None)
@given(
    requests=st.lists(USAGE_REQUEST, max_size=60),
    keys_in_use=KEYS_IN_USE,
    start=STARTS,
    caps=st.sampled_from(
        [
            {},
            {"max_entries": 3},
            {"max_agents_per_key": 1},
            {"max_clients": 2},
            {"max_entries": 1, "max_clients": 1},
        ]
    ),
)
def test_usage_counted_in_passes_is_usage_counted_one_request_at_a_time(
    requests: list[tuple[int, str | None, str | None, float]],
    keys_in_use: int,
    start: float,
    caps: dict[str, int],
) -> None:
    together, one_by_one = _usage(caps), _usage(caps)
    at = start
    with mock.patch.object(usage_module, "ABSORB_EVERY", FEW):
        for key, user_agent, client, step in requests:
            at += step
            key_id = f"key_{key % keys_in_use}"
            together.record(key_id, at, user_agent, client)
            one_by_one._arrived.append((key_id, user_agent, at, client))
            one_by_one._absorb()
    assert len(together._arrived) == len(requests) % FEW  # a pass every ABSORB_EVERY

    assert together.pending == one_by_one.pending
    assert _usage_held(together) == _usage_held(one_by_one)
    assert together._window.requests == len(requests)


def test_usage_holds_at_most_absorb_every_requests_as_they_came() -> None:
    recorder = _usage({})
    for n in range(ABSORB_EVERY - 1):
        recorder.record("key_a", NOW + n, "acme/1.0", "192.0.2.1")
    assert len(recorder._arrived) == ABSORB_EVERY - 1
    assert len(recorder._window) == 0

    recorder.record("key_a", NOW + ABSORB_EVERY, "acme/2.0", "192.0.2.1")

    assert recorder._arrived == []
    window = recorder._window
    day = int(NOW // DAY)
    assert window.agents == {
        ("key_a", day, "acme/1.0"): (ABSORB_EVERY - 1, NOW, NOW + ABSORB_EVERY - 2),
        ("key_a", day, "acme/2.0"): (1, NOW + ABSORB_EVERY, NOW + ABSORB_EVERY),
    }
    assert list(window.clients.values()) == [ABSORB_EVERY]


def _log() -> RequestLogRecorder:
    # Caps no test here reaches, but for the counters': each request is then kept or counted out.
    return RequestLogRecorder(RecordingStore(), clock=lambda: NOW, max_counts=5)


@settings(max_examples=100, deadline=None)
@given(made=st.lists(LOG_REQUEST, max_size=60), keys_in_use=KEYS_IN_USE, start=STARTS)
def test_the_request_log_put_in_passes_is_the_log_put_one_request_at_a_time(
    made: list[tuple[int, str, str, str | None, str | None, float]], keys_in_use: int, start: float
) -> None:
    together, one_by_one = _log(), _log()
    at = start
    with mock.patch.object(log_module, "ABSORB_EVERY", FEW):
        for n, (key, method, path, code, user_agent, step) in enumerate(made):
            at += step
            status = 403 if code else 200
            request = (f"key_{key % keys_in_use}", at, method, path, status, code, user_agent, n / 1e6)
            together.record(*request)
            one_by_one._arrived.append(request)
            one_by_one._absorb()
    assert len(together._arrived) == len(made) % FEW

    assert together.pending == one_by_one.pending
    mine, theirs = together._window, one_by_one._window
    assert mine.counts == theirs.counts
    assert mine.recent == theirs.recent
    assert (mine.entries, mine.dropped_entries, mine.dropped_counts) == (
        theirs.entries,
        theirs.dropped_entries,
        theirs.dropped_counts,
    )
    assert sum(c[0] for c in mine.counts.values()) + mine.dropped_counts == len(made)
    assert sum(len(entries) for entries in mine.recent.values()) == sum(
        min(KEEP_PER_KEY, sum(r[0] % keys_in_use == key for r in made)) for key in range(keys_in_use)
    )


def test_a_busy_key_keeps_its_newest_requests_and_the_caps_hold() -> None:
    recorder = RequestLogRecorder(RecordingStore(), clock=lambda: NOW, max_entries=KEEP_PER_KEY + 10)
    hot = 3 * ABSORB_EVERY + 5
    for n in range(hot):
        recorder.record("key_hot", NOW + n / 1000, "GET", "/v1/version", 200, None, "acme/1.0", 0.001)
    for n in range(40):
        recorder.record(f"key_{n % 2}", NOW + 1 + n / 1000, "GET", "/v1/me", 200, None, None, 0.001)

    assert recorder.pending
    window = recorder._window
    recent = window.recent["key_hot"]
    assert len(recent) == KEEP_PER_KEY
    assert [entry[1] for entry in recent] == [NOW + n / 1000 for n in range(hot - KEEP_PER_KEY, hot)]
    # The other two keys share the 10 entries left under the cap; the rest of theirs are counted out.
    assert window.entries == KEEP_PER_KEY + 10
    assert window.dropped_entries == 30
    assert sum(len(r) for r in window.recent.values()) == KEEP_PER_KEY + 10
    hour = int(NOW // HOUR)
    assert window.counts[("key_hot", hour, "GET", "/v1/version", None)][:3] == (
        hot,
        NOW,
        NOW + (hot - 1) / 1000,
    )


def test_a_pass_across_midnight_counts_each_request_on_its_own_day_and_hour() -> None:
    midnight = (NOW // DAY + 1) * DAY
    usage, one_by_one = _usage({}), _usage({})
    log, log_one_by_one = _log(), _log()
    with (
        mock.patch.object(usage_module, "ABSORB_EVERY", FEW),
        mock.patch.object(log_module, "ABSORB_EVERY", FEW),
    ):
        for n in range(40):
            at = midnight - 1.25 + n * 0.1  # a pass of 16 spans midnight
            usage.record(f"key_{n % 2}", at, "acme/1.0", "192.0.2.1")
            one_by_one._arrived.append((f"key_{n % 2}", "acme/1.0", at, "192.0.2.1"))
            one_by_one._absorb()
            request = (f"key_{n % 2}", at, "GET", "/v1/version", 200, None, "acme/1.0", 0.001)
            log.record(*request)
            log_one_by_one._arrived.append(request)
            log_one_by_one._absorb()
    usage._absorb()
    log._absorb()

    today = int(midnight // DAY) - 1
    assert {slot[1] for slot in usage._window.agents} == {today, today + 1}
    assert usage._window.agents[("key_0", today, "acme/1.0")][0] == 7  # 13 before midnight, 7 of key_0
    assert _usage_held(usage) == _usage_held(one_by_one)
    hour = int(midnight // HOUR) - 1
    assert {slot[1] for slot in log._window.counts} == {hour, hour + 1}
    assert log._window.counts == log_one_by_one._window.counts
