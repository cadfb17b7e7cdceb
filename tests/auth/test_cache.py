"""KeyCache, and how the running app keeps it in step with the database."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from tests.factories import bearer, make_api_key
from thotbot.auth.cache import KeyCache
from thotbot.core import keys
from thotbot.core.revocation import RevokedReason
from thotbot.services import Services
from thotbot.storage import KeyRecord

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)


def _record(key_id: str, **changes: object) -> KeyRecord:
    fields: dict[str, object] = {
        "id": key_id,
        "account_id": "acct_1",
        "name": "k",
        "hint": "thot_ak_0000…0000",
        "read_only": False,
        "grants": frozenset(),
        "created_at": T0,
        "expires_at": None,
        "revoked_at": None,
        "last_used_at": None,
        "last_user_agent": None,
    }
    fields.update(changes)
    return KeyRecord(**fields)  # type: ignore[arg-type]


def _digest(n: int) -> bytes:
    return n.to_bytes(32, "big")


class TestKeyCache:
    def test_put_and_get(self) -> None:
        cache = KeyCache()
        record = _record("key_1", expires_at=T0 + timedelta(days=1), revoked_at=T0)

        entry = cache.put(_digest(1), record)

        assert cache.get(_digest(1)) is entry
        assert entry.key_id == record.id
        assert entry.account_id == record.account_id
        assert entry.expires_ts == (T0 + timedelta(days=1)).timestamp()
        assert entry.revoked_ts == T0.timestamp()
        assert cache.get(_digest(2)) is None
        assert len(cache) == 1

    def test_never_expiring_key(self) -> None:
        entry = KeyCache().put(_digest(1), _record("key_1"))

        assert entry.expires_ts is None
        assert entry.revoked_ts is None

    def test_evict_by_key_id(self) -> None:
        cache = KeyCache()
        cache.put(_digest(1), _record("key_1"))
        cache.put(_digest(2), _record("key_2"))

        cache.evict("key_1")
        cache.evict("key_unknown")

        assert cache.get(_digest(1)) is None
        assert cache.get(_digest(2)) is not None
        assert len(cache) == 1

    def test_is_bounded_dropping_the_oldest(self) -> None:
        cache = KeyCache(max_entries=3)
        for n in range(5):
            cache.put(_digest(n), _record(f"key_{n}"))

        assert len(cache) == 3
        assert [cache.get(_digest(n)) is not None for n in range(5)] == [False, False, True, True, True]
        # A dropped entry's id is forgotten too: evicting it is harmless.
        cache.evict("key_0")
        assert len(cache) == 3

    def test_putting_the_same_key_again_replaces_it(self) -> None:
        cache = KeyCache(max_entries=2)
        cache.put(_digest(1), _record("key_1"))
        cache.put(_digest(2), _record("key_2"))

        cache.put(_digest(2), _record("key_2", revoked_at=T0))

        assert len(cache) == 2
        entry = cache.get(_digest(2))
        assert entry is not None
        assert entry.revoked_ts == T0.timestamp()
        assert cache.get(_digest(1)) is not None

    def test_clear(self) -> None:
        cache = KeyCache()
        cache.put(_digest(1), _record("key_1"))

        cache.clear()

        assert len(cache) == 0
        assert cache.get(_digest(1)) is None

    def test_a_lookup_older_than_an_eviction_is_not_cached(self) -> None:
        cache = KeyCache()
        generation = cache.generation
        cache.evict("key_1")  # the poller saw a change while the lookup was in flight

        entry = cache.put(_digest(1), _record("key_1"), generation)

        assert entry.key_id == "key_1"
        assert cache.get(_digest(1)) is None

    def test_a_lookup_with_no_eviction_since_is_cached(self) -> None:
        cache = KeyCache()
        generation = cache.generation

        cache.put(_digest(1), _record("key_1"), generation)

        assert cache.get(_digest(1)) is not None


def _refused_within(client: TestClient, raw: str, seconds: float) -> httpx2.Response:
    deadline = time.monotonic() + seconds
    while True:
        response = client.get("/v1/version", headers=bearer(raw))
        if response.status_code != 200 or time.monotonic() >= deadline:
            return response
        time.sleep(0.05)


def test_the_guard_caches_verified_keys(client: TestClient, services: Services) -> None:
    raw, record = make_api_key(services)

    assert client.get("/v1/version", headers=bearer(raw)).status_code == 200

    entry = services.key_cache.get(keys.hash_key(raw))
    assert entry is not None
    assert entry.key_id == record.id


def test_unknown_keys_are_not_cached(client: TestClient, services: Services) -> None:
    assert client.get("/v1/version", headers=bearer(keys.generate())).status_code == 401

    assert len(services.key_cache) == 0


def test_a_revocation_by_another_process_is_honoured_within_a_second(
    client: TestClient, services: Services
) -> None:
    raw, record = make_api_key(services)
    assert client.get("/v1/version", headers=bearer(raw)).status_code == 200  # cached now

    # What `thotbot keys revoke` does from another process: the database only, no eviction here.
    services.keys.revoke(record.id, reason=RevokedReason.OPERATOR)
    response = _refused_within(client, raw, 1.0)

    assert response.status_code == 401
    assert response.json()["code"] == "revoked_api_key"


def test_an_expiry_set_elsewhere_is_honoured_within_a_second(client: TestClient, services: Services) -> None:
    raw, record = make_api_key(services)
    assert client.get("/v1/version", headers=bearer(raw)).status_code == 200

    services.keys.set_expiry(record.id, datetime.now(UTC) - timedelta(seconds=1))
    response = _refused_within(client, raw, 1.0)

    assert response.json()["code"] == "expired_api_key"


def test_a_revocation_racing_the_first_lookup_is_not_lost(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, record = make_api_key(services)
    find_by_hashes = services.keys.find_by_hashes

    def racing(digests: Sequence[bytes]) -> dict[bytes, KeyRecord]:
        found = find_by_hashes(digests)  # read before the revocation commits...
        services.keys.revoke(record.id)
        services.key_cache.evict(record.id)  # ...and the poller evicts before the lookup returns
        return found

    monkeypatch.setattr(services.keys, "find_by_hashes", racing)
    client.get("/v1/version", headers=bearer(raw))
    monkeypatch.setattr(services.keys, "find_by_hashes", find_by_hashes)

    response = client.get("/v1/version", headers=bearer(raw))

    assert response.status_code == 401
    assert response.json()["code"] == "revoked_api_key"


class TestMemoryBound:
    def test_the_estimate_covers_what_an_entry_really_holds(self) -> None:
        import tracemalloc

        cache = KeyCache()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for n in range(2000):
            # As a miss has it: the record, its strings and its digest are new, and only the cache keeps them.
            grants = frozenset({"account:security"}) if n % 2 else frozenset()
            record = _record(f"key_{n:026d}", account_id=f"acct_{n:026d}", expires_at=T0, grants=grants)
            cache.put(_digest(n), record)
        del record
        real = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()

        # From above, and not wildly: the cache stays within its budget, and fills most of it.
        assert real <= cache.bytes
        assert cache.bytes <= 2 * real

    def test_the_estimate_covers_allowlists_and_limits_too(self) -> None:
        import tracemalloc

        cache = KeyCache()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for n in range(2000):
            # The worst case: every key has a list of its own (keys with the same list share one).
            networks = (f"10.{n // 256}.{n % 256}.0/24", "192.0.2.7/32", f"2001:db8:{n:x}::/48")
            record = _record(
                f"key_{n:026d}",
                account_id=f"acct_{n:026d}",
                expires_at=T0,
                allowed_networks=networks,
                rate_limit="100/minute",
            )
            cache.put(_digest(n), record)
        del record
        real = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()

        assert real <= cache.bytes
        assert cache.bytes <= 2 * real
        entry = cache.get(_digest(1))
        assert entry is not None
        assert entry.networks is not None
        assert entry.rate_limit is not None
        assert entry.networks.allows("10.0.1.200")
        assert not entry.networks.allows("10.0.2.1")
        assert entry.rate_limit.amount == 100

    def test_it_holds_no_more_bytes_than_its_budget_dropping_the_oldest(self) -> None:
        cache = KeyCache(max_bytes=10_000)
        for n in range(100):
            cache.put(_digest(n), _record(f"key_{n}"))

        assert 0 < cache.bytes <= 10_000
        kept = [n for n in range(100) if cache.get(_digest(n)) is not None]
        assert kept == list(range(100 - len(kept), 100))
        assert len(kept) == len(cache) > 5

    def test_unknown_digests_are_bounded_and_forgotten_on_a_key_change(self) -> None:
        cache = KeyCache(max_bytes=8 * 200 * 10)  # room for ten negative entries
        for n in range(50):
            cache.put_missing(_digest(n))

        assert cache.missing == 10
        assert cache.is_missing(_digest(49))
        assert not cache.is_missing(_digest(0))
        cache.evict("key_anything")
        assert cache.missing == 0

    def test_a_lookup_older_than_an_eviction_learns_nothing_missing(self) -> None:
        cache = KeyCache()
        generation = cache.generation
        cache.evict("key_1")

        cache.put_missing(_digest(1), generation)

        assert not cache.is_missing(_digest(1))


def test_a_restore_under_the_running_server_empties_its_cache(client: TestClient, services: Services) -> None:
    raw, record = make_api_key(services)
    other_raw, other = make_api_key(services)
    for key in (raw, other_raw):
        assert client.get("/v1/version", headers=bearer(key)).status_code == 200  # cached now
    services.keys.revoke(other.id)
    assert _refused_within(client, other_raw, 1.0).status_code == 401  # the server has seen that change
    # A backup from before those changes is restored: no key change in it, and in it this key was
    # revoked (say, by the operator, before a key with the same id was made again).
    with services.engine.begin() as connection:
        connection.execute(text("DELETE FROM key_events"))
        connection.execute(
            text("UPDATE api_keys SET revoked_at = :at WHERE id = :id"), {"at": T0, "id": record.id}
        )

    response = _refused_within(client, raw, 1.0)

    assert response.status_code == 401
    assert response.json()["code"] == "revoked_api_key"
