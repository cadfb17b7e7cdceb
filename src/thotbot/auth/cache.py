"""A bounded in-memory cache of verified keys, evicted by key id when a key changes."""

from __future__ import annotations

from dataclasses import dataclass

from thotbot.core.identity import AuthMethod, Identity
from thotbot.storage import KeyRecord

__all__ = ["CachedKey", "KeyCache"]


@dataclass(frozen=True, slots=True)
class CachedKey:
    record: KeyRecord
    #: Unix times, precomputed so the request path compares floats, not datetimes.
    expires_ts: float | None
    revoked_ts: float | None
    #: Built once per cached key, not once per request.
    identity: Identity


class KeyCache:
    """Maps a key's digest to its record.

    Entries are dropped when the poller in app.py reads a change to their key from the durable
    ``key_events`` table. There is deliberately no time-to-live: while the database is down the
    cache keeps authenticating known keys, and on reconnect the poller replays every change it
    missed, so no revocation is lost.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max = max_entries
        self._by_digest: dict[bytes, CachedKey] = {}
        self._digest_by_id: dict[str, bytes] = {}
        #: Bumped by every eviction: a lookup that started before one must not cache what it read.
        self.generation = 0

    def get(self, digest: bytes) -> CachedKey | None:
        return self._by_digest.get(digest)

    def put(self, digest: bytes, record: KeyRecord, generation: int | None = None) -> CachedKey:
        """Cache ``record``; with ``generation``, only if nothing was evicted since it was read.

        Without that check a lookup racing a revocation could cache the key as it was before,
        after the poller's eviction, and the revoked key would then be accepted indefinitely.
        """
        entry = CachedKey(
            record=record,
            expires_ts=record.expires_at.timestamp() if record.expires_at else None,
            revoked_ts=record.revoked_at.timestamp() if record.revoked_at else None,
            identity=Identity(
                account_id=record.account_id,
                method=AuthMethod.API_KEY,
                key_id=record.id,
                read_only=record.read_only,
                grants=record.grants,
            ),
        )
        if generation is not None and generation != self.generation:
            return entry
        if len(self._by_digest) >= self._max and digest not in self._by_digest:
            # Dicts keep insertion order: dropping the oldest entry is O(1).
            oldest = next(iter(self._by_digest))
            self._drop(oldest)
        self._by_digest[digest] = entry
        self._digest_by_id[record.id] = digest
        return entry

    def evict(self, key_id: str) -> None:
        self.generation += 1
        digest = self._digest_by_id.get(key_id)
        if digest is not None:
            self._drop(digest)

    def clear(self) -> None:
        self.generation += 1
        self._by_digest.clear()
        self._digest_by_id.clear()

    def __len__(self) -> int:
        return len(self._by_digest)

    def _drop(self, digest: bytes) -> None:
        entry = self._by_digest.pop(digest, None)
        if entry is not None:
            self._digest_by_id.pop(entry.record.id, None)
