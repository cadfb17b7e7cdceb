from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import redis

from tests.services import redis_url
from thotbot.ratelimit import (
    SHARE_FROM,
    Decision,
    RateLimiter,
    _Windows,
    hash_address,
    key_bucket,
    key_limit,
    normalise_key_limit,
)

pytestmark = pytest.mark.anyio
MakeLimiter = Callable[[str, str], RateLimiter]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def storage_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "memory" else redis_url()


@pytest.fixture
async def make_limiter(storage_url: str | None) -> AsyncIterator[MakeLimiter]:
    made: list[RateLimiter] = []

    def make(per_key: str, anon: str, url: str | None = storage_url) -> RateLimiter:
        made.append(RateLimiter(per_key, anon, url))
        return made[-1]

    yield make
    for limiter in made:
        await limiter.close()


@pytest.fixture
def key_id() -> str:
    # Unique per test: the Redis database is shared with other runs.
    return "key_" + uuid.uuid4().hex[:16]


class TestRateLimiter:
    async def test_hit_key_counts_down_then_refuses(self, make_limiter: MakeLimiter, key_id: str) -> None:
        limiter = make_limiter("3/minute", "2/minute")

        decisions = [await limiter.hit_key(key_id) for _ in range(4)]

        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert [d.remaining for d in decisions] == [2, 1, 0, 0]
        assert all(d.limit == 3 for d in decisions)
        assert all(0 < d.reset_after <= 60 for d in decisions)

    async def test_keys_are_limited_separately(self, make_limiter: MakeLimiter, key_id: str) -> None:
        limiter = make_limiter("1/minute", "1/minute")

        assert (await limiter.hit_key(key_id)).allowed
        assert (await limiter.hit_key(key_id + "x")).allowed
        assert not (await limiter.hit_key(key_id)).allowed

    async def test_a_keys_own_limit_counts_apart_from_the_default(
        self, make_limiter: MakeLimiter, key_id: str
    ) -> None:
        limiter = make_limiter("100/minute", "2/minute")
        own = key_limit("2/hour")
        await limiter.hit_key(key_id)

        decisions = [await limiter.hit_key(key_id, own) for _ in range(3)]

        assert [d.allowed for d in decisions] == [True, True, False]
        assert [d.limit for d in decisions] == [2, 2, 2]
        if limiter.mode == "local":
            # Windows follow the clock: an hour's ends on the hour, whatever the minute now (in the
            # last minute of an hour that is under 60 s, and the test asserted more once).
            to_the_hour = 3600 - time.time() % 3600
            assert abs(decisions[-1].reset_after - to_the_hour) <= 1
        else:
            assert 60 < decisions[-1].reset_after <= 3600  # `limits` opens a window at the first hit
        default = await limiter.hit_key(key_id)
        assert (default.allowed, default.limit, default.remaining) == (True, 100, 98)
        if limiter.mode == "local":
            now = limiter.hit_key_now(key_id, own)
            assert now is not None
            assert (now.allowed, now.limit, now.remaining) == (False, 2, 0)

    async def test_anon_exhausted_after_the_limit(self, make_limiter: MakeLimiter) -> None:
        limiter = make_limiter("10/minute", "2/minute")
        address = f"192.0.2.{uuid.uuid4().int % 250}-{uuid.uuid4().hex}"

        assert not await limiter.anon_exhausted(address)
        await limiter.hit_anon(address)
        await limiter.hit_anon(address)

        assert await limiter.anon_exhausted(address)
        assert not (await limiter.hit_anon(address)).allowed


def test_decision_headers() -> None:
    decision = Decision(allowed=True, limit=600, remaining=599, reset_after=42)

    assert decision.headers() == [
        (b"ratelimit-limit", b"600"),
        (b"ratelimit-remaining", b"599"),
        (b"ratelimit-reset", b"42"),
    ]


def test_decision_headers_stay_right_past_the_remembered_ones() -> None:
    # The limit and reset headers are made once and remembered, up to a bound.
    for n in range(10_000):
        limit, reset = 1_000 + n, n % 3_600
        headers = Decision(True, limit, n, reset).headers()
        assert headers == [
            (b"ratelimit-limit", str(limit).encode()),
            (b"ratelimit-remaining", str(n).encode()),
            (b"ratelimit-reset", str(reset).encode()),
        ]


@pytest.mark.redis
async def test_redis_holds_no_raw_address() -> None:
    url = redis_url()
    limiter = RateLimiter("10/minute", "10/minute", url)
    address = "198.51.100." + str(uuid.uuid4().int % 250)

    await limiter.hit_anon(address)

    await limiter.close()
    client = redis.Redis.from_url(url)
    stored = [k.decode() for k in client.scan_iter("thotbot-rl*")]
    client.close()
    assert any(hash_address(address) in k for k in stored)
    assert not any(address in k for k in stored)


async def test_unreachable_redis_lets_requests_through(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RateLimiter("1/minute", "1/minute", "redis://127.0.0.1:1/0")

    decisions = [await limiter.hit_key("key_x") for _ in range(3)]

    assert all(d.allowed for d in decisions)
    assert not await limiter.anon_exhausted("203.0.113.9")
    await limiter.close()
    assert "not being limited" in caplog.text


async def test_ipv6_clients_are_counted_by_their_64() -> None:
    limiter = RateLimiter("10/minute", "2/minute")

    await limiter.hit_anon("2001:db8:1:2::1")
    await limiter.hit_anon("2001:db8:1:2:ffff::9")

    assert not (await limiter.hit_anon("2001:db8:1:2:3:4:5:6")).allowed
    assert await limiter.anon_exhausted("2001:db8:1:2::77")
    assert (await limiter.hit_anon("2001:db8:1:3::1")).allowed
    assert hash_address("2001:db8:1:2::1") == hash_address("2001:db8:1:2::2")


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("100/minute", "100/minute"),
        (" 3 per Hour ", "3/hour"),
        ("10/5 minutes", "10/5 minute"),
        ("1/day", "1/day"),
    ],
)
def test_a_keys_limit_is_stored_in_one_spelling(given: str, stored: str) -> None:
    assert normalise_key_limit(given) == stored
    assert key_limit(stored).amount == key_limit(normalise_key_limit(stored)).amount


@pytest.mark.parametrize(
    "bad", ["", "0/minute", "-1/minute", "lots", "10/second;1000/hour", "5/parsec", "1" * 80]
)
def test_a_bad_limit_is_refused_with_its_name(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a rate limit"):
        normalise_key_limit(bad)


async def test_a_cached_keys_bucket_counts_as_its_id_does(key_id: str) -> None:
    limiter = RateLimiter("3/minute", "2/minute")  # one process: it decides in memory, at once
    bucket = key_bucket(key_id)  # as a CachedKey holds it

    decisions = [limiter.hit_key_now(key_id, None, bucket), await limiter.hit_key(key_id)]
    decisions.append(limiter.hit_key_now(key_id, None, bucket))

    assert [(d.allowed, d.remaining) for d in decisions if d] == [(True, 2), (True, 1), (True, 0)]
    assert not (await limiter.hit_key(key_id)).allowed


@dataclass(frozen=True, slots=True)
class _Entry:
    """As a cached key holds its window (auth/cache.py's CachedKey): frozen, one slot the limiter's."""

    window: list[int] | None = field(default=None, compare=False)


async def test_a_held_window_is_the_limiters_own_and_counts_with_every_other_hit(key_id: str) -> None:
    limiter = RateLimiter("5/minute", "2/minute")
    entry, bucket = _Entry(), key_bucket(key_id)

    decisions = [limiter.hit_key_now(key_id, None, bucket, entry) for _ in range(3)]
    decisions += [await limiter.hit_key(key_id), limiter.hit_key_now(key_id, None, bucket, entry)]

    assert [d.remaining for d in decisions if d] == [4, 3, 2, 1, 0]
    assert entry.window is not None
    assert entry.window is limiter._local._windows[bucket]  # type: ignore[union-attr]
    refused = limiter.hit_key_now(key_id, None, bucket, entry)
    assert refused is not None
    assert not refused.allowed


def test_a_held_window_that_ended_and_was_swept_is_not_counted_in_again() -> None:
    # The holder still points at the ended window after the sweep dropped it: the next hit must
    # start a window the limiter keeps (what a sync shares and `count` reads), not count in the old.
    t0 = 1_800_000_000
    windows, entry = _Windows(sweep_every=60.0), _Entry()
    windows.hit("key/a", 60, t0 + 30.0, 100, entry)
    ended = entry.window
    windows.hit("key/b", 60, t0 + 200.0, 100)  # a sweep: key/a's window ended long ago
    assert "key/a" not in windows._windows

    assert windows.hit("key/a", 60, t0 + 201.0, 100, entry) == (1, t0 + 240)
    assert entry.window is not ended
    assert entry.window is windows._windows["key/a"]
    assert windows.count("key/a", t0 + 201.0) == 1


def test_hits_through_a_holder_are_shared_at_the_next_sync() -> None:
    windows, entry = _Windows(track=True), _Entry()
    t0 = 1_800_000_000
    for n in range(3):
        windows.hit("key/a", 60, t0 + 1.0 + n, SHARE_FROM, entry)  # every hit worth sharing

    hits, _ = windows.take(t0 + 5.0)

    assert [(h[0], h[3]) for h in hits] == [("key/a", 3)]
