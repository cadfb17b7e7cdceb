"""Rate limits over the `limits` library: in memory by default, shared through Redis by URL.

Per key for authenticated requests (THOTBOT_RATE_LIMIT), per hashed client address for
unauthenticated and failed ones (THOTBOT_ANON_RATE_LIMIT). A limiter that cannot reach Redis lets
requests through and says so in the log: an outage of the limiter is not an outage of the API.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from typing import NamedTuple

from limits import RateLimitItem, parse
from limits.aio.storage import Storage as AsyncStorage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from thotbot.core.clientaddr import address_bucket

__all__ = ["Decision", "RateLimiter", "hash_address"]

log = logging.getLogger("thotbot.ratelimit")
RETRY_STORAGE_AFTER = 5.0


class Decision(NamedTuple):
    # A NamedTuple, not a frozen dataclass: one is made for every API request, and a frozen
    # dataclass's __init__ costs several times more.
    allowed: bool
    limit: int
    remaining: int
    reset_after: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-limit", b"%d" % self.limit),
            (b"ratelimit-remaining", b"%d" % self.remaining),
            (b"ratelimit-reset", b"%d" % self.reset_after),
        ]


def hash_address(address: str) -> str:
    """Limits are kept per hashed address, so Redis never holds a client's IP.

    An IPv6 client is counted by its /64 (address_bucket): it usually holds the whole network.
    """
    bucket = address_bucket(address)
    return hashlib.sha256(b"thotbot-ratelimit:" + bucket.encode()).hexdigest()[:32]


class RateLimiter:
    """Fixed-window limits: one counter per key or hashed address and window.

    With Redis the counters go through `limits`' async Redis storage, shared by every instance.
    Without it they live in this process, in _LocalWindows: a dict update, where `limits`' memory
    storage (its locks, key building and async wrappers) cost 4 to 5 µs a request, a tenth of a
    whole bare request (docs/PERFORMANCE.md). Both count the same fixed windows: a window opens
    at a key's first hit and lasts the limit's period.
    """

    def __init__(self, per_key: str, anon: str, redis_url: str | None = None) -> None:
        self._per_key: RateLimitItem = parse(per_key)
        self._anon: RateLimitItem = parse(anon)
        self._local: _LocalWindows | None = None
        self._shared: AsyncStorage | None = None
        if redis_url:
            shared = storage_from_string(
                "async+" + redis_url,
                implementation="redispy",
                key_prefix="thotbot-rl",
                wrap_exceptions=True,
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
            )
            assert isinstance(shared, AsyncStorage)
            self._shared = shared
            self._limiter = FixedWindowRateLimiter(shared)
        else:
            self._local = _LocalWindows()
        self._warned_at = 0.0
        self._down_until = 0.0

    async def close(self) -> None:
        """Close the Redis connections (they belong to the event loop that opened them)."""
        bridge = getattr(self._shared, "bridge", None)
        if bridge is not None:
            await bridge.get_connection().aclose()

    def hit_key_now(self, key_id: str) -> Decision | None:
        """``hit_key`` without a coroutine, when the counters are in this process; None when they
        are shared (then await ``hit_key``). The guard calls it on every request."""
        if self._local is not None:
            return self._hit_local(self._per_key, "key/" + key_id)
        return None

    async def hit_key(self, key_id: str) -> Decision:
        if self._local is not None:
            return self._hit_local(self._per_key, "key/" + key_id)
        return await self._hit_shared(self._per_key, "key", key_id)

    async def hit_anon(self, address: str) -> Decision:
        if self._local is not None:
            return self._hit_local(self._anon, "anon/" + hash_address(address))
        return await self._hit_shared(self._anon, "anon", hash_address(address))

    async def anon_exhausted(self, address: str) -> bool:
        """True when this address may not fail again yet: spare the database its lookups."""
        if self._local is not None:
            return self._local.count("anon/" + hash_address(address), time.time()) >= self._anon.amount
        if self._storage_down():
            return False
        try:
            return not await self._limiter.test(self._anon, "anon", hash_address(address))
        except StorageError:
            self._mark_down()
            return False

    def _hit_local(self, item: RateLimitItem, key: str) -> Decision:
        assert self._local is not None
        now = time.time()
        count, resets_at = self._local.hit(key, _expiry(item), now)
        amount = item.amount
        remaining = amount - count if count < amount else 0
        return Decision(count <= amount, amount, remaining, math.ceil(resets_at - now))

    async def _hit_shared(self, item: RateLimitItem, kind: str, identifier: str) -> Decision:
        unlimited = Decision(True, item.amount, item.amount, item.get_expiry())
        if self._storage_down():
            return unlimited
        try:
            allowed = await self._limiter.hit(item, kind, identifier)
            stats = await self._limiter.get_window_stats(item, kind, identifier)
        except StorageError:
            self._mark_down()
            return unlimited
        reset_after = max(0, math.ceil(stats.reset_time - time.time()))
        return Decision(allowed, item.amount, stats.remaining, reset_after)

    def _storage_down(self) -> bool:
        return self._down_until > 0 and time.monotonic() < self._down_until

    def _mark_down(self) -> None:
        # Try the storage again in a few seconds, not on every request: a Redis that hangs
        # would otherwise add its timeout to each one.
        now = time.monotonic()
        self._down_until = now + RETRY_STORAGE_AFTER
        if now - self._warned_at > 60:
            self._warned_at = now
            log.warning("rate limit storage unreachable: requests are not being limited", exc_info=True)


@functools.cache
def _expiry(item: RateLimitItem) -> int:
    """The item's period in seconds; ``get_expiry`` computes it anew each time it is asked."""
    return item.get_expiry()


class _LocalWindows:
    """Fixed-window counters for one process: ``{key: (resets_at, count)}``, swept as they expire."""

    def __init__(self, sweep_every: float = 60.0) -> None:
        self._windows: dict[str, tuple[float, int]] = {}
        self._sweep_every = sweep_every
        self._next_sweep = 0.0

    def hit(self, key: str, period: int, now: float) -> tuple[int, float]:
        window = self._windows.get(key)
        if window is None or window[0] <= now:
            window = (now + period, 1)
            if now >= self._next_sweep:
                self._sweep(now)
        else:
            window = (window[0], window[1] + 1)
        self._windows[key] = window
        return window[1], window[0]

    def count(self, key: str, now: float) -> int:
        window = self._windows.get(key)
        return window[1] if window is not None and window[0] > now else 0

    def _sweep(self, now: float) -> None:
        # Memory stays bounded by the keys and addresses seen within one period.
        self._windows = {k: w for k, w in self._windows.items() if w[0] > now}
        self._next_sweep = now + self._sweep_every
