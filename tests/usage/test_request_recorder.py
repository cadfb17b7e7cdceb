"""The request log's recorder: what one flush writes, the memory caps, failed writes, trim and prune."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from sqlalchemy.exc import DataError
from starlette.routing import Route

import thotbot.usage.requests as requests_module
from tests.factories import fake_key
from thotbot.api.routes import routes as api_routes
from thotbot.storage.request_log import KEEP_PER_KEY, RequestLogBatch
from thotbot.usage.requests import PRUNE_EVERY, TRIM_AFTER, TRIM_EVERY, RequestLogRecorder

NOW = datetime(2026, 5, 1, 12, 30, tzinfo=UTC).timestamp()


class DatabaseDown(Exception):
    pass


class RecordingStore:
    """The recorder's seam, in memory; ``down`` fails like an unreachable database, ``refuse``
    like a batch the database rejects."""

    def __init__(self) -> None:
        self.batches: list[RequestLogBatch] = []
        self.trims: list[set[str]] = []
        self.prunes: list[datetime] = []
        self.down = False
        self.refuse = False

    def write(self, batch: RequestLogBatch) -> None:
        if self.down:
            raise DatabaseDown
        if self.refuse:
            raise DataError("INSERT ...", {}, ValueError("value too long"))
        self.batches.append(batch)

    def trim(self, key_ids: Iterable[str], keep: int = KEEP_PER_KEY) -> int:
        if self.down:
            raise DatabaseDown
        self.trims.append(set(key_ids))
        return 0

    def prune(self, before: datetime) -> int:
        if self.down:
            raise DatabaseDown
        self.prunes.append(before)
        return 0

    def entries(self, key_id: str | None = None) -> list[tuple[str, str, int]]:
        return [
            (r.method, r.path, r.status)
            for b in self.batches
            for r in b.requests
            if key_id in (None, r.key_id)
        ]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> RecordingStore:
    return RecordingStore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def recorder(store: RecordingStore, clock: Clock) -> RequestLogRecorder:
    recorder = RequestLogRecorder(store, clock=clock)
    recorder.use_routes(
        (r.methods or (), r.path_regex, r.path_format) for r in api_routes if isinstance(r, Route)
    )
    return recorder


def test_a_flush_writes_the_requests_and_their_hourly_counts_by_endpoint(
    recorder: RequestLogRecorder, store: RecordingStore
) -> None:
    recorder.record("key_a", NOW, "GET", "/v1/version", 200, None, "acme/1.0", 0.0012)
    recorder.record(
        "key_a", NOW + 1, "GET", "/v1/keys/key_1111111111111111/requests", 404, "not_found", "acme/1.0", 0.002
    )
    recorder.record(
        "key_a", NOW + 2, "GET", "/v1/keys/key_2222222222222222/requests", 404, "not_found", "acme/2.0", 0.003
    )
    recorder.record("key_a", NOW + 3, "HEAD", "/v1/version", 200, None, None, 0.001)
    recorder.record("key_a", NOW + 4, "GET", "/v1/nothing/here", 404, "not_found", None, 0.001)
    recorder.record(
        "key_b", NOW + 5, "DELETE", "/v1/keys/key_1111111111111111", 403, "insufficient_scope", None, 0.001
    )

    assert anyio.run(recorder.flush) == 6

    [batch] = store.batches
    assert store.entries("key_a")[:2] == [
        ("GET", "/v1/version", 200),
        ("GET", "/v1/keys/key_1111111111111111/requests", 404),
    ]
    first = batch.requests[0]
    assert first.at == datetime.fromtimestamp(NOW, UTC)
    assert first.duration_us == 1200
    assert (first.code, first.user_agent) == (None, "acme/1.0")
    hours = {(h.key_id, h.endpoint, h.code): h for h in batch.hours}
    assert set(hours) == {
        ("key_a", "GET /v1/version", ""),
        ("key_a", "HEAD /v1/version", ""),
        ("key_a", "GET /v1/keys/{key_id}/requests", "not_found"),
        ("key_a", "GET (other)", "not_found"),
        ("key_b", "DELETE /v1/keys/{key_id}", "insufficient_scope"),
    }
    grouped = hours["key_a", "GET /v1/keys/{key_id}/requests", "not_found"]
    assert grouped.requests == 2
    assert grouped.hour == datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert (grouped.first_seen, grouped.last_seen) == (
        datetime.fromtimestamp(NOW + 1, UTC),
        datetime.fromtimestamp(NOW + 2, UTC),
    )
    assert grouped.user_agent == "acme/2.0"


def test_what_is_written_is_cut_redacted_and_free_of_nul(
    recorder: RequestLogRecorder, store: RecordingStore
) -> None:
    key = fake_key("c")
    recorder.record("key_a", NOW, "GET", "/v1/a\x00b" + "x" * 600, 404, "not_found", f"acme/1.0 {key}", 0.001)

    anyio.run(recorder.flush)

    [entry] = store.batches[0].requests
    assert "\x00" not in entry.path
    assert len(entry.path) <= 512
    assert entry.user_agent is not None
    assert key not in entry.user_agent
    assert key[8:40] not in repr(store.batches)


def test_each_key_holds_its_newest_200(recorder: RequestLogRecorder, store: RecordingStore) -> None:
    for i in range(KEEP_PER_KEY + 50):
        recorder.record("key_a", NOW + i, "GET", f"/v1/n{i}", 404, "not_found", None, 0.001)

    anyio.run(recorder.flush)

    paths = [path for _, path, _ in store.entries()]
    assert paths == [f"/v1/n{i}" for i in range(50, KEEP_PER_KEY + 50)]
    # Every request is still counted by the hour.
    assert sum(h.requests for h in store.batches[0].hours) == KEEP_PER_KEY + 50


def test_memory_is_bounded_however_many_keys_and_paths(store: RecordingStore) -> None:
    recorder = RequestLogRecorder(store, max_entries=1000, max_keys=100, max_counts=500)
    for i in range(20_000):
        recorder.record(f"key_{i % 300}", NOW, "GET", f"/v1/p{i}", 404, "not_found", None, 0.001)
        assert recorder.pending <= 1000 + 500

    anyio.run(recorder.flush)

    [batch] = store.batches
    assert len({r.key_id for r in batch.requests}) == 100
    assert len(batch.requests) <= 1000
    assert recorder.stats.dropped_entries == 20_000 - len(batch.requests)
    assert recorder.stats.dropped_counts == 20_000 - 500
    assert recorder.pending == 0


def test_a_failed_flush_keeps_the_newest_and_retries(
    recorder: RequestLogRecorder, store: RecordingStore
) -> None:
    for i in range(150):
        recorder.record("key_a", NOW + i, "GET", f"/v1/old{i}", 200, None, None, 0.001)
    store.down = True
    assert anyio.run(recorder.flush) == 0
    for i in range(100):
        recorder.record("key_a", NOW + 200 + i, "GET", f"/v1/new{i}", 200, None, None, 0.001)
    assert anyio.run(recorder.flush) == 0
    store.down = False

    assert anyio.run(recorder.flush) == 250

    paths = [path for _, path, _ in store.entries()]
    assert len(paths) == KEEP_PER_KEY
    assert paths[-1] == "/v1/new99"
    assert paths[0] == "/v1/old50"
    assert recorder.stats.failed_flushes == 2


def test_a_batch_the_database_refuses_is_dropped_after_three_tries(
    recorder: RequestLogRecorder, store: RecordingStore
) -> None:
    recorder.record("key_a", NOW, "GET", "/v1/version", 200, None, None, 0.001)
    store.refuse = True
    for _ in range(3):
        anyio.run(recorder.flush)
    store.refuse = False
    anyio.run(recorder.flush)

    assert store.batches == []
    assert recorder.stats.refused == 1
    assert recorder.pending == 0


def _requests(recorder: RequestLogRecorder, key_id: str, n: int) -> None:
    for i in range(n):
        recorder.record(key_id, NOW + i / 1000, "GET", "/v1/version", 200, None, None, 0.001)


def test_trims_the_keys_written_enough_and_prunes_past_30_days(
    recorder: RequestLogRecorder, store: RecordingStore, clock: Clock
) -> None:
    _requests(recorder, "key_a", TRIM_AFTER)
    anyio.run(recorder.flush)
    assert store.prunes == [datetime.fromtimestamp(NOW, UTC) - timedelta(days=30)]
    assert store.trims == []  # not on every flush

    clock.now += TRIM_EVERY
    _requests(recorder, "key_b", 1)
    anyio.run(recorder.flush)
    # A trim ranks every stored request of its keys: a key written once waits until it has more.
    assert store.trims == [{"key_a"}]
    assert len(store.prunes) == 1

    clock.now = NOW + PRUNE_EVERY
    anyio.run(recorder.flush)
    assert len(store.prunes) == 2
    assert store.trims == [{"key_a"}]  # nothing written since, key_b still short

    _requests(recorder, "key_b", TRIM_AFTER - 1)
    clock.now += TRIM_EVERY
    anyio.run(recorder.flush)
    assert store.trims == [{"key_a"}, {"key_b"}]


def test_past_max_trim_keys_every_key_remembered_is_trimmed(
    recorder: RequestLogRecorder, store: RecordingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(requests_module, "MAX_TRIM_KEYS", 3)
    for key_id in ("key_a", "key_b"):
        _requests(recorder, key_id, 1)
    anyio.run(recorder.flush)
    assert store.trims == []

    _requests(recorder, "key_c", 1)
    anyio.run(recorder.flush)  # three keys remembered: the memory's bound, not the clock, says when
    assert store.trims == [{"key_a", "key_b", "key_c"}]
    assert recorder._to_trim == {}


def test_a_failed_trim_keeps_its_keys_for_the_next(
    recorder: RequestLogRecorder, store: RecordingStore, clock: Clock
) -> None:
    _requests(recorder, "key_a", TRIM_AFTER)
    anyio.run(recorder.flush)
    clock.now += TRIM_EVERY
    store.down = True
    anyio.run(recorder.flush)
    store.down = False
    assert store.trims == []
    assert recorder._to_trim == {"key_a": TRIM_AFTER}

    clock.now += TRIM_EVERY
    anyio.run(recorder.flush)
    assert store.trims == [{"key_a"}]
