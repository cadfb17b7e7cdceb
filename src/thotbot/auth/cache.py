"""The in-memory caches of verified keys and of digests that name no key, both bounded by memory.

A verified key is held as a ``CachedKey``: what the request path needs and nothing more (no name,
no dates as datetimes, no User-Agent), a few hundred bytes. The cache is sized by bytes, not by
entries (THOTBOT_KEY_CACHE_MB), and evicts its oldest entry first when full.

Entries are dropped when the poller in app.py reads a change to their key from the durable
``key_events`` table. There is deliberately no time-to-live for known keys: while the database is
down the cache keeps authenticating them, and on reconnect the poller replays every change it
missed, so no revocation is lost.

A well-formed key that the store does not know is remembered too (negative caching), so a client
that keeps sending a deleted or mistyped key costs one database read, not one per request. Those
entries are a digest and a deadline each, bounded in number, forgotten after ``missing_ttl`` and on
any key change. They cannot hide a key created later: a digest names one secret, and a new key's
secret is drawn at creation, so no client can have sent it before.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from limits import RateLimitItem

from thotbot.core.identity import AuthMethod, Identity
from thotbot.core.networks import AllowedNetworks, allowed_networks
from thotbot.ratelimit import key_bucket, key_limit
from thotbot.storage import KeyRecord

__all__ = ["DEFAULT_CACHE_BYTES", "CachedKey", "KeyCache"]

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
#: What one entry costs beyond its strings, measured with tracemalloc (tests/auth/test_cache.py):
#: the CachedKey and its Identity, two float objects and a slot in each of the two dicts (440
#: bytes), and the rate-limit window its ``window`` field may keep alive after the limiter swept
#: it (a list of seven ints and its collector header: 128).
_ENTRY_OVERHEAD = 580
#: A negative entry: the digest (bytes, 65), the deadline (float, 24) and the dict slot.
_MISSING_BYTES = 200


@dataclass(frozen=True, slots=True)
class CachedKey:
    key_id: str
    account_id: str
    read_only: bool
    #: The owning account is disabled: the key is refused.
    account_disabled: bool
    #: Unix times, precomputed so the request path compares floats, not datetimes.
    expires_ts: float | None
    revoked_ts: float | None
    #: Built once per cached key, not once per request.
    identity: Identity
    #: The operator's IP allowlist, parsed; None (the usual case): any address, at no cost.
    networks: AllowedNetworks | None = None
    #: The operator's rate limit for this key; None: the server's default.
    rate_limit: RateLimitItem | None = None
    #: Its rate-limit bucket under the default limit (``key_bucket``), made once: the limiter finds
    #: the key's window by this very string on every request.
    bucket: str = ""
    #: The limiter's note of the key's current rate-limit window (ratelimit.HoldsWindow): the
    #: one field set after the entry is made, by the limiter alone, so that it finds the window
    #: without probing its dictionary. Not part of what the entry says of the key.
    window: list[int] | None = field(default=None, compare=False, repr=False)


def cached_key(record: KeyRecord) -> CachedKey:
    return CachedKey(
        key_id=record.id,
        account_id=record.account_id,
        read_only=record.read_only,
        account_disabled=record.account_disabled,
        expires_ts=record.expires_at.timestamp() if record.expires_at else None,
        revoked_ts=record.revoked_at.timestamp() if record.revoked_at else None,
        identity=Identity(
            account_id=record.account_id,
            method=AuthMethod.API_KEY,
            key_id=record.id,
            read_only=record.read_only,
            grants=record.grants,
        ),
        # Both are shared by every key with the same list or limit (interned), not built per key.
        networks=allowed_networks(record.allowed_networks),
        rate_limit=key_limit(record.rate_limit) if record.rate_limit else None,
        bucket=key_bucket(record.id),
    )


def entry_bytes(entry: CachedKey) -> int:
    """An estimate, from above, of the memory one cached key holds (its digest included)."""
    grants = entry.identity.grants
    return (
        _ENTRY_OVERHEAD
        + 65  # the 32-byte digest as a bytes object
        + sys.getsizeof(entry.key_id)
        + sys.getsizeof(entry.account_id)
        + sys.getsizeof(entry.bucket)
        + (sys.getsizeof(grants) + sum(sys.getsizeof(g) for g in grants) if grants else 0)
        # Counted whole for each key, though keys with the same list share one: from above.
        + (entry.networks.nbytes if entry.networks is not None else 0)
    )


class KeyCache:
    """Maps a key's digest to its ``CachedKey``, and remembers digests that name no key."""

    def __init__(
        self,
        max_bytes: int = DEFAULT_CACHE_BYTES,
        *,
        max_entries: int | None = None,
        missing_ttl: float = 300.0,
    ) -> None:
        self.max_bytes = max_bytes
        self._max_entries = max_entries
        self._by_digest: dict[bytes, CachedKey] = {}
        self._digest_by_id: dict[str, bytes] = {}
        self._sizes: dict[bytes, int] = {}
        self.bytes = 0
        #: digest -> the time.monotonic() after which it is asked for again.
        self._missing: dict[bytes, float] = {}
        self._max_missing = max(1, max_bytes // 8 // _MISSING_BYTES)
        self._missing_ttl = missing_ttl
        #: Bumped by every eviction: a lookup that started before one must not cache what it read.
        self.generation = 0

    def get(self, digest: bytes) -> CachedKey | None:
        return self._by_digest.get(digest)

    def put(self, digest: bytes, record: KeyRecord, generation: int | None = None) -> CachedKey:
        """Cache ``record``; with ``generation``, only if nothing was evicted since it was read.

        Without that check a lookup racing a revocation could cache the key as it was before,
        after the poller's eviction, and the revoked key would then be accepted indefinitely.
        """
        entry = cached_key(record)
        if generation is not None and generation != self.generation:
            return entry
        self._drop(digest)
        size = entry_bytes(entry)
        while self._by_digest and (self.bytes + size > self.max_bytes or self._full()):
            # Dicts keep insertion order: dropping the oldest entry is O(1).
            self._drop(next(iter(self._by_digest)))
        self._by_digest[digest] = entry
        self._digest_by_id[record.id] = digest
        self._sizes[digest] = size
        self.bytes += size
        return entry

    def is_missing(self, digest: bytes) -> bool:
        """True when this digest was looked up lately and named no key."""
        deadline = self._missing.get(digest)
        if deadline is None:
            return False
        if time.monotonic() < deadline:
            return True
        del self._missing[digest]
        return False

    def put_missing(self, digest: bytes, generation: int | None = None) -> None:
        if generation is not None and generation != self.generation:
            return
        missing = self._missing
        missing.pop(digest, None)
        while len(missing) >= self._max_missing:
            del missing[next(iter(missing))]
        missing[digest] = time.monotonic() + self._missing_ttl

    def evict(self, key_id: str) -> None:
        self.generation += 1
        # Any key change forgets the negative entries too: they are cheap to learn again.
        self._missing.clear()
        digest = self._digest_by_id.get(key_id)
        if digest is not None:
            self._drop(digest)

    def clear(self) -> None:
        self.generation += 1
        self._by_digest.clear()
        self._digest_by_id.clear()
        self._sizes.clear()
        self._missing.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._by_digest)

    @property
    def missing(self) -> int:
        return len(self._missing)

    def _full(self) -> bool:
        return self._max_entries is not None and len(self._by_digest) >= self._max_entries

    def _drop(self, digest: bytes) -> None:
        entry = self._by_digest.pop(digest, None)
        if entry is not None:
            self._digest_by_id.pop(entry.key_id, None)
            self.bytes -= self._sizes.pop(digest)
