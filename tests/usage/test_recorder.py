from __future__ import annotations

import hashlib
import time
import tracemalloc
from collections.abc import Iterable
from datetime import UTC, date, datetime

import anyio
import pytest
from sqlalchemy.exc import DataError

from thotbot.storage.usage import UsageBatch
from thotbot.usage import DisabledRecorder, UsageRecorder
from thotbot.usage.batching import MIN_ENTRIES_TO_PRICE
from thotbot.usage.recorder import DAY, MAX_AGENTS_PER_KEY, MAX_CLIENTS, MAX_ENTRIES

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC).timestamp()
TODAY = date(2026, 5, 1)


class DatabaseDown(Exception):
    pass


class MemoryUsageStore:
    """The recorder's seam, in memory; ``down`` makes every call fail like an unreachable database,
    ``refuse`` makes writes fail like a batch the database rejects."""

    def __init__(self) -> None:
        self.batches: list[UsageBatch] = []
        self.salts: dict[date, bytes] = {}
        self.prunes: list[tuple[date, date]] = []
        self.down = False
        self.refuse = False

    def write(self, batch: UsageBatch) -> None:
        if self.down:
            raise DatabaseDown
        if self.refuse:
            raise DataError("INSERT ...", {}, ValueError("value too long"))
        self.batches.append(batch)

    def ensure_salts(self, days: Iterable[date]) -> dict[date, bytes]:
        if self.down:
            raise DatabaseDown
        for day in days:
            self.salts.setdefault(day, bytes([len(self.salts) + 1]) * 32)
        return {day: self.salts[day] for day in days}

    def prune(self, keep_since: date, salts_since: date) -> int:
        if self.down:
            raise DatabaseDown
        self.prunes.append((keep_since, salts_since))
        return 0

    def requests(self, key_id: str | None = None) -> int:
        return sum(d.requests for b in self.batches for d in b.days if key_id in (None, d.key_id))

    def agents(self) -> dict[tuple[str, str | None], int]:
        counts: dict[tuple[str, str | None], int] = {}
        for batch in self.batches:
            for a in batch.agents:
                counts[(a.key_id, a.user_agent)] = counts.get((a.key_id, a.user_agent), 0) + a.requests
        return counts


@pytest.fixture
def store() -> MemoryUsageStore:
    return MemoryUsageStore()


@pytest.fixture
def recorder(store: MemoryUsageStore) -> UsageRecorder:
    return UsageRecorder(store, clock=lambda: NOW)


def test_flush_writes_counts_per_key_day_and_user_agent(
    recorder: UsageRecorder, store: MemoryUsageStore
) -> None:
    recorder.record("key_a", NOW, "acme/1.0", "192.0.2.1")
    recorder.record("key_a", NOW + 5, "acme/1.0", "192.0.2.1")
    recorder.record("key_a", NOW + 6, None, "192.0.2.2")
    recorder.record("key_b", NOW + 7, "curl/8.5.0", "192.0.2.1")

    written = anyio.run(recorder.flush)

    assert written == 4
    [batch] = store.batches
    assert sorted((d.key_id, d.day, d.requests) for d in batch.days) == [
        ("key_a", TODAY, 3),
        ("key_b", TODAY, 1),
    ]
    agent = next(a for a in batch.agents if a.user_agent == "acme/1.0")
    assert (agent.requests, agent.first_seen.timestamp(), agent.last_seen.timestamp()) == (2, NOW, NOW + 5)
    assert batch.last_used["key_a"].user_agent is None
    assert batch.last_used["key_a"].last_used_at.timestamp() == NOW + 6
    assert recorder.pending == 0


def test_client_addresses_are_kept_only_as_keyed_hashes(
    recorder: UsageRecorder, store: MemoryUsageStore
) -> None:
    anyio.run(recorder.flush)  # loads the shared salts of today and tomorrow
    recorder.record("key_a", NOW, "acme/1.0", "192.0.2.1")
    recorder.record("key_a", NOW + 1, "acme/1.0", "192.0.2.1")
    recorder.record("key_a", NOW + DAY, "acme/1.0", "192.0.2.1")

    anyio.run(recorder.flush)

    clients = store.batches[-1].clients
    expected_today = hashlib.blake2b(b"192.0.2.1", key=store.salts[TODAY], digest_size=16).digest()
    assert {(c.day, c.client_hash, c.requests) for c in clients} >= {(TODAY, expected_today, 2)}
    assert len({c.client_hash for c in clients}) == 2  # another day, another salt: unlinkable
    assert "192.0.2.1" not in repr(store.batches)


def test_without_the_shared_salt_a_local_one_still_hides_the_address(
    recorder: UsageRecorder, store: MemoryUsageStore
) -> None:
    store.down = True
    recorder.record("key_a", NOW, "acme/1.0", "192.0.2.1")
    anyio.run(recorder.flush)
    store.down = False

    anyio.run(recorder.flush)

    [batch] = store.batches
    assert "192.0.2.1" not in repr(batch)
    assert len(batch.clients) == 1


def test_once_the_shared_salt_is_loaded_it_replaces_the_local_one(
    recorder: UsageRecorder, store: MemoryUsageStore
) -> None:
    store.down = True
    recorder.record("key_a", NOW, "acme/1.0", "192.0.2.1")
    anyio.run(recorder.flush)
    store.down = False
    anyio.run(recorder.flush)  # writes the first request, loads the shared salts

    recorder.record("key_a", NOW + 1, "acme/1.0", "192.0.2.1")
    anyio.run(recorder.flush)

    shared = hashlib.blake2b(b"192.0.2.1", key=store.salts[TODAY], digest_size=16).digest()
    assert [c.client_hash for c in store.batches[-1].clients] == [shared]
    assert store.batches[0].clients[0].client_hash != shared


def test_memory_is_bounded_with_100000_distinct_user_agents(
    recorder: UsageRecorder, store: MemoryUsageStore
) -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(100_000):
            user_agent = f"agent-{i:06d}/1.0 ({'x' * 480})"
            recorder.record(f"key_{i % 20}", NOW, user_agent, f"198.51.100.{i % 250}")
        growth = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()

    assert recorder.pending <= MAX_ENTRIES + 20 * 2 + MAX_CLIENTS
    # 10,000 User-Agents of 512 characters and their counters, well under 16 MB.
    assert growth < 16 * 1024 * 1024
    anyio.run(recorder.flush)
    assert store.requests() == 100_000
    assert recorder.stats.unitemised == 100_000 - MAX_ENTRIES
    assert sum(d.unitemised for b in store.batches for d in b.days) == 100_000 - MAX_ENTRIES


def test_one_key_cannot_take_all_the_room(recorder: UsageRecorder, store: MemoryUsageStore) -> None:
    for i in range(MAX_AGENTS_PER_KEY + 50):
        recorder.record("key_noisy", NOW, f"agent-{i}/1.0")
    recorder.record("key_quiet", NOW, "acme/1.0")

    anyio.run(recorder.flush)

    agents = store.agents()
    assert sum(1 for key_id, _ in agents if key_id == "key_noisy") == MAX_AGENTS_PER_KEY
    assert agents[("key_quiet", "acme/1.0")] == 1
    [noisy_day] = [d for d in store.batches[0].days if d.key_id == "key_noisy"]
    assert (noisy_day.requests, noisy_day.unitemised) == (MAX_AGENTS_PER_KEY + 50, 50)


def test_client_hashes_are_capped_but_requests_still_counted(
    recorder: UsageRecorder, store: MemoryUsageStore
) -> None:
    for i in range(MAX_CLIENTS + 10):
        recorder.record("key_a", NOW, "acme/1.0", f"2001:db8::{i:x}")

    anyio.run(recorder.flush)

    assert len(store.batches[0].clients) == MAX_CLIENTS
    assert recorder.stats.clients_dropped == 10
    assert store.requests() == MAX_CLIENTS + 10


def test_a_failed_flush_keeps_the_batch_and_retries(recorder: UsageRecorder, store: MemoryUsageStore) -> None:
    recorder.record("key_a", NOW, "acme/1.0", "192.0.2.1")
    store.down = True

    assert anyio.run(recorder.flush) == 0
    recorder.record("key_a", NOW + 1, "acme/1.0", "192.0.2.1")
    recorder.record("key_a", NOW + 2, "acme/2.0", "192.0.2.1")
    assert anyio.run(recorder.flush) == 0
    store.down = False
    assert anyio.run(recorder.flush) == 3

    assert recorder.stats.failed_flushes == 2
    [batch] = store.batches
    assert store.agents() == {("key_a", "acme/1.0"): 2, ("key_a", "acme/2.0"): 1}
    assert batch.last_used["key_a"].user_agent == "acme/2.0"
    assert sum(c.requests for c in batch.clients) == 3


def test_an_outage_never_drops_a_batch(recorder: UsageRecorder, store: MemoryUsageStore) -> None:
    recorder.record("key_a", NOW, "acme/1.0")
    store.down = True
    for _ in range(10):
        anyio.run(recorder.flush)

    store.down = False
    anyio.run(recorder.flush)

    assert store.requests() == 1
    assert recorder.stats.dropped == 0


def test_a_batch_the_database_refuses_is_dropped_after_three_tries(
    recorder: UsageRecorder, store: MemoryUsageStore
) -> None:
    recorder.record("key_a", NOW, "acme/1.0")
    store.refuse = True
    for _ in range(3):
        anyio.run(recorder.flush)
    store.refuse = False
    recorder.record("key_a", NOW + 1, "acme/2.0")

    anyio.run(recorder.flush)

    assert recorder.stats.dropped == 1
    assert store.agents() == {("key_a", "acme/2.0"): 1}


def test_a_failed_batch_merges_back_under_the_caps(store: MemoryUsageStore) -> None:
    recorder = UsageRecorder(store, max_entries=3, max_clients=2, clock=lambda: NOW)
    for i in range(3):
        recorder.record("key_a", NOW, f"old-{i}/1", f"192.0.2.{i}")
    store.down = True
    anyio.run(recorder.flush)
    for i in range(3):
        recorder.record("key_a", NOW + 1, f"new-{i}/1", f"198.51.100.{i}")

    store.down = False
    anyio.run(recorder.flush)

    [batch] = store.batches
    assert len(batch.agents) == 3
    [day] = batch.days
    assert (day.requests, day.unitemised) == (6, 3)
    assert len(batch.clients) == 2
    assert batch.last_used["key_a"].last_used_at.timestamp() == NOW + 1


def test_days_split_at_utc_midnight(recorder: UsageRecorder, store: MemoryUsageStore) -> None:
    midnight = datetime(2026, 5, 2, tzinfo=UTC).timestamp()
    recorder.record("key_a", midnight - 1, "acme/1.0")
    recorder.record("key_a", midnight, "acme/1.0")

    anyio.run(recorder.flush)

    assert sorted((d.day, d.requests) for d in store.batches[0].days) == [
        (date(2026, 5, 1), 1),
        (date(2026, 5, 2), 1),
    ]


def test_prunes_by_the_retention_at_most_hourly(store: MemoryUsageStore) -> None:
    now = [NOW]
    recorder = UsageRecorder(store, retention_days=30, clock=lambda: now[0])

    anyio.run(recorder.flush)
    anyio.run(recorder.flush)
    now[0] += 3600
    anyio.run(recorder.flush)

    assert store.prunes == [(date(2026, 4, 2), date(2026, 4, 30))] * 2


def test_concurrent_flushes_write_once(recorder: UsageRecorder, store: MemoryUsageStore) -> None:
    recorder.record("key_a", NOW, "acme/1.0")

    async def both() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(recorder.flush)
            tg.start_soon(recorder.flush)

    anyio.run(both)

    assert store.requests() == 1


def test_disabled_recorder_records_nothing(store: MemoryUsageStore) -> None:
    recorder = DisabledRecorder(store)
    recorder.record("key_a", NOW, "acme/1.0", "192.0.2.1")

    assert anyio.run(recorder.flush) == 0
    assert recorder.pending == 0
    assert store.batches == []


def test_a_keys_last_use_is_its_latest_request_whatever_its_user_agent(
    recorder: UsageRecorder, store: MemoryUsageStore
) -> None:
    recorder.record("key_a", NOW, "acme/1.0")
    recorder.record("key_a", NOW + 2, "acme/2.0")
    recorder.record("key_a", NOW + 3, "acme/1.0")
    recorder.record("key_b", NOW + 1, None)
    # An itemised request keeps nothing apart: its slot has its time and User-Agent already.
    assert recorder._window.unitemised == {}

    anyio.run(recorder.flush)

    [batch] = store.batches
    used = {k: (u.last_used_at.timestamp(), u.user_agent) for k, u in batch.last_used.items()}
    assert used == {"key_a": (NOW + 3, "acme/1.0"), "key_b": (NOW + 1, None)}


def test_a_request_over_the_caps_still_counts_as_the_keys_last_use(store: MemoryUsageStore) -> None:
    recorder = UsageRecorder(store, max_entries=1, clock=lambda: NOW)
    recorder.record("key_a", NOW, "acme/1.0")
    recorder.record("key_a", NOW + 1, "other/1.0")  # over the cap: unitemised
    recorder.record("key_b", NOW + 2, "curl/8.5.0")  # over the cap too, and its key's only request

    anyio.run(recorder.flush)

    [batch] = store.batches
    used = {k: (u.last_used_at.timestamp(), u.user_agent) for k, u in batch.last_used.items()}
    assert used == {"key_a": (NOW + 1, "other/1.0"), "key_b": (NOW + 2, "curl/8.5.0")}


def test_a_failed_batch_keeps_the_last_use_of_slots_it_could_not_merge(store: MemoryUsageStore) -> None:
    recorder = UsageRecorder(store, max_entries=1, clock=lambda: NOW)
    recorder.record("key_a", NOW + 5, "old/1.0")
    failed = recorder._take()  # a flush under way...
    recorder.record("key_b", NOW, "new/1.0")  # ...while a request takes the only slot
    recorder._restore(failed)  # ...and then fails: key_a's slot no longer fits

    anyio.run(recorder.flush)

    [batch] = store.batches
    assert store.agents() == {("key_b", "new/1.0"): 1}
    assert batch.last_used["key_a"].last_used_at.timestamp() == NOW + 5
    assert batch.last_used["key_a"].user_agent == "old/1.0"


class CostlyStore(MemoryUsageStore):
    """Writes that take ``SPIN`` seconds of the writing thread's CPU per User-Agent row."""

    SPIN = 0.0002

    def write(self, batch: UsageBatch) -> None:
        end = time.thread_time() + self.SPIN * len(batch.agents)
        while time.thread_time() < end:
            pass
        super().write(batch)


def test_the_next_flush_is_priced_by_what_is_pending_at_the_last_flushs_cost_an_entry() -> None:
    store = CostlyStore()
    recorder = UsageRecorder(store, clock=lambda: NOW)
    recorder.record("key_0", NOW, "acme/1.0")
    assert recorder.next_flush_cpu == 0  # no flush yet: nothing known of the cost
    anyio.run(recorder.flush)
    recorder.record("key_0", NOW, "acme/1.0")
    assert recorder.next_flush_cpu == 0  # one entry's flush is what any flush costs: no price

    for n in range(MIN_ENTRIES_TO_PRICE):
        recorder.record(f"key_{n}", NOW, "acme/1.0")
    anyio.run(recorder.flush)
    assert recorder.flush_cpu >= CostlyStore.SPIN * MIN_ENTRIES_TO_PRICE
    assert recorder.next_flush_cpu == 0  # nothing pending

    # Four times the keys come into use: the next flush will cost four times the last.
    for n in range(4 * MIN_ENTRIES_TO_PRICE):
        recorder.record(f"key_{n}", NOW + 1, "acme/1.0")
    assert recorder.next_flush_cpu == pytest.approx(4 * recorder.flush_cpu)

    # A write that fails waits on the database, not the CPU: its retry is not held back.
    store.down = True
    anyio.run(recorder.flush)
    assert recorder.pending == 4 * MIN_ENTRIES_TO_PRICE
    assert recorder.next_flush_cpu == 0
