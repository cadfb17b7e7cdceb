"""Rate limits over the `limits` library: in memory by default, shared through Redis by URL.

Per key for authenticated requests (THOTBOT_RATE_LIMIT), per hashed client address for
unauthenticated and failed ones (THOTBOT_ANON_RATE_LIMIT). A limiter that cannot reach Redis lets
requests through and says so in the log: an outage of the limiter is not an outage of the API.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

__all__ = ["Decision", "RateLimiter", "hash_address"]

log = logging.getLogger("thotbot.ratelimit")
RETRY_STORAGE_AFTER = 5.0


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_after).encode()),
        ]


def hash_address(address: str) -> str:
    """Limits are kept per hashed address, so Redis never holds a client's IP."""
    return hashlib.sha256(b"thotbot-ratelimit:" + address.encode()).hexdigest()[:32]


class RateLimiter:
    def __init__(self, per_key: str, anon: str, redis_url: str | None = None) -> None:
        if redis_url:
            storage = storage_from_string(
                "async+" + redis_url,
                implementation="redispy",
                key_prefix="thotbot-rl",
                wrap_exceptions=True,
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
            )
        else:
            storage = storage_from_string("async+memory://", wrap_exceptions=True)
        self._storage = storage
        self._limiter = FixedWindowRateLimiter(storage)
        self._per_key: RateLimitItem = parse(per_key)
        self._anon: RateLimitItem = parse(anon)
        self._warned_at = 0.0
        self._down_until = 0.0

    async def close(self) -> None:
        """Close the Redis connections (they belong to the event loop that opened them)."""
        bridge = getattr(self._storage, "bridge", None)
        if bridge is not None:
            await bridge.get_connection().aclose()

    async def hit_key(self, key_id: str) -> Decision:
        return await self._hit(self._per_key, "key", key_id)

    async def hit_anon(self, address: str) -> Decision:
        return await self._hit(self._anon, "anon", hash_address(address))

    async def anon_exhausted(self, address: str) -> bool:
        """True when this address may not fail again yet: spare the database its lookups."""
        if self._storage_down():
            return False
        try:
            return not await self._limiter.test(self._anon, "anon", hash_address(address))
        except StorageError:
            self._mark_down()
            return False

    async def _hit(self, item: RateLimitItem, kind: str, identifier: str) -> Decision:
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
