"""Rate limits: counted in memory, shared through the database or Redis when several processes serve.

Per key for authenticated requests (THOTBOT_RATE_LIMIT), per hashed client address for
unauthenticated and failed ones (THOTBOT_ANON_RATE_LIMIT); the key verifier also asks, before it
looks an unknown key up, whether the address has failed too often already (``anon_exhausted``).
services.py picks one of three modes:

- **local**: one process on SQLite, no Redis. Counters in a dict of this process (``_Windows``):
  exact, and a request costs a dict update.
- **database**: several processes without Redis: `thotbot serve --workers N` with N > 1 (it sets
  THOTBOT_WORKERS for its workers), or any PostgreSQL database, which several instances may share.
  Each process still decides in memory, as in local mode; a background task (``sync``, run by the
  app every ``SYNC_INTERVAL``, 100 ms, and at shutdown) adds the hits it counted since the last sync
  to one row per bucket and window (storage/rate_windows.py: one upsert batch, no write per
  request) and reads back every process's totals for the windows it uses. A decision counts the
  totals as of the last sync plus this process's hits since. Windows are aligned to the clock
  (a window starts at ``floor(now / period) * period``), so every process means the same window.
- **redis**: THOTBOT_REDIS_URL set. Every hit goes to Redis through `limits`, shared at once.

What the database mode lets through beyond a limit is bounded by what the processes admit within one
sync interval: each process learns of the others' hits at its next sync, and of a bucket it had not
seen in the window (a key that only another worker had served) only once it has hit it. With N
processes and a limit L per window, a burst may pass L by the hits all N admit in about 100 ms
(plus a sync's duration): nothing at a steady rate far below L, a few requests for a client going
flat out. A process keeps a window's hits to itself until its count reaches a twentieth of the limit
(``SHARE_FROM``): tens of thousands of keys each used far below their limit then cost no shared row
at all. That adds at most (N - 1) x L / 20 to the bound: nothing for a limit under 20, whose every
hit is shared. Hits still unshared when their window ends are dropped: no one decides on that window
any more. Rows of ended windows are deleted by each process once a minute, a minute after their end.

An outage of the limiter is not an outage of the API. A Redis that cannot be reached lets requests
through; a database that cannot be reached leaves each process counting on its own (with what it
last learnt of the others), and its unshared hits are sent when it answers again. Either is logged
once a minute at most, and retried after a few seconds.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple, Protocol

import anyio.to_thread
from limits import RateLimitItem, parse, parse_many
from limits.aio.storage import Storage as AsyncStorage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from sqlalchemy.exc import SQLAlchemyError

from thotbot.core.clientaddr import address_bucket
from thotbot.core.memo import Memo
from thotbot.storage import RateWindowStore
from thotbot.storage.rate_windows import WindowHits, WindowId

__all__ = [
    "SYNC_INTERVAL",
    "Decision",
    "HoldsWindow",
    "RateLimiter",
    "hash_address",
    "key_bucket",
    "key_limit",
    "normalise_key_limit",
]

log = logging.getLogger("thotbot.ratelimit")
RETRY_STORAGE_AFTER = 5.0
#: How often a process shares its counts in database mode: the bound on what may pass a limit.
SYNC_INTERVAL = 0.1
#: A process shares a window's hits once its count reaches 1/SHARE_FROM of the limit (_Windows.take).
SHARE_FROM = 20
#: Ended windows are deleted this often, and this long after their end (hosts' clocks differ a little).
PRUNE_EVERY = 60.0
PRUNE_GRACE = 60


class Decision(NamedTuple):
    # A NamedTuple, not a frozen dataclass: one is made for every API request, and a frozen
    # dataclass's __init__ costs several times more.
    allowed: bool
    limit: int
    remaining: int
    reset_after: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        # The limit is one of a few and the reset a number of seconds within the period: their
        # headers are made once each and looked up after, 0.15 µs a request less than formatting.
        return [
            _LIMIT_HEADERS[self.limit],
            (b"ratelimit-remaining", b"%d" % self.remaining),
            _RESET_HEADERS[self.reset_after],
        ]


_LIMIT_HEADERS: Memo[int, tuple[bytes, bytes]] = Memo(lambda n: (b"ratelimit-limit", b"%d" % n), limit=4096)
_RESET_HEADERS: Memo[int, tuple[bytes, bytes]] = Memo(lambda n: (b"ratelimit-reset", b"%d" % n), limit=4096)


def normalise_key_limit(text: str) -> str:
    """A per-key limit as the operator typed it, checked and in one spelling (``100/minute``,
    ``5000/2 hour``); raises ValueError, with a message naming it, when it is not one limit."""
    value = text.strip()
    try:
        items = parse_many(value) if 0 < len(value) <= 64 else []
    except ValueError:
        items = []
    if len(items) != 1 or items[0].amount < 1:
        shown = value[:64] if value.isprintable() else repr(value[:64])
        reason = (
            "give one limit per key, not several"
            if len(items) > 1
            else "give one limit of at least 1 request, such as 100/minute or 5000/hour"
        )
        raise ValueError(f"{shown!r} is not a rate limit: {reason}")
    item = items[0]
    period = item.GRANULARITY.name
    return f"{item.amount}/{period}" if item.multiples == 1 else f"{item.amount}/{item.multiples} {period}"


@functools.lru_cache(maxsize=1024)
def key_limit(text: str) -> RateLimitItem:
    """A stored per-key limit, parsed once and shared by every key that has it."""
    return parse(text)


def hash_address(address: str) -> str:
    """Limits are kept per hashed address, so Redis never holds a client's IP.

    An IPv6 client is counted by its /64 (address_bucket): it usually holds the whole network.
    """
    bucket = address_bucket(address)
    return hashlib.sha256(b"thotbot-ratelimit:" + bucket.encode()).hexdigest()[:32]


class RateLimiter:
    """Fixed-window limits: one counter per key or hashed address and window.

    Locally and through the database the counters are _Windows, in this process: a dict update,
    where `limits`' memory storage (its locks, key building and async wrappers) cost 4 to 5 µs a
    request, a tenth of a whole bare request (docs/PERFORMANCE.md); their windows are aligned to
    the clock. With Redis they go through `limits`' async Redis storage, whose window opens at a
    key's first hit and lasts the limit's period.
    """

    def __init__(
        self,
        per_key: str,
        anon: str,
        redis_url: str | None = None,
        shared: RateWindowStore | None = None,
        *,
        clock: Callable[[], float] = time.time,
        retry_after: float = RETRY_STORAGE_AFTER,
    ) -> None:
        self._per_key: RateLimitItem = parse(per_key)
        self._anon: RateLimitItem = parse(anon)
        # Their periods, read once: get_expiry() computes it anew, and even cached by the item
        # (_expiry), hashing a limit runs Python code: 0.4 µs a request.
        self._per_key_period = self._per_key.get_expiry()
        self._anon_period = self._anon.get_expiry()
        self._clock = clock
        self._retry_after = retry_after
        self._local: _Windows | None = None
        self._store: RateWindowStore | None = None
        self._shared: AsyncStorage | None = None
        if redis_url:
            shared_storage = storage_from_string(
                "async+" + redis_url,
                implementation="redispy",
                key_prefix="thotbot-rl",
                wrap_exceptions=True,
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
            )
            assert isinstance(shared_storage, AsyncStorage)
            self._shared = shared_storage
            self._limiter = FixedWindowRateLimiter(shared_storage)
        else:
            # Only a shared count needs to know which windows moved since the last sync.
            self._local = _Windows(track=shared is not None)
            self._store = shared
        self._warned_at = 0.0
        self._down_until = 0.0
        #: CPU seconds the last sync took in its worker thread: what sharing costs the process.
        self.sync_cpu = 0.0
        self._next_prune = 0.0

    @property
    def mode(self) -> Literal["local", "database", "redis"]:
        if self._shared is not None:
            return "redis"
        return "local" if self._store is None else "database"

    async def close(self) -> None:
        """Close the Redis connections (they belong to the event loop that opened them)."""
        bridge = getattr(self._shared, "bridge", None)
        if bridge is not None:
            await bridge.get_connection().aclose()

    def hit_key_now(
        self,
        key_id: str,
        limit: RateLimitItem | None = None,
        bucket: str | None = None,
        holder: HoldsWindow | None = None,
    ) -> Decision | None:
        """``hit_key`` without a coroutine, when the counters are in this process; None when they
        are shared (then await ``hit_key``). The guard calls it on every request.

        ``limit`` is the key's own limit (the operator's, ``thotbot keys limit``), None for the
        default. A key's own limit counts in a bucket of its own, named by its period, so a new
        period never meets a window the old one opened (the database keys windows by their start).
        ``bucket`` is ``key_bucket(key_id)``, made once for a cached key: the same string object on
        every request finds its window by identity, where a new one was hashed and compared with
        the stored one, read from memory that tens of thousands of keys had made cold. ``holder``
        is the key's cached entry, on which the limiter notes the key's current window (``_Windows.hit``).
        """
        if self._local is not None:
            if limit is None:
                key = bucket or key_bucket(key_id)
                return self._hit_local(self._per_key, key, self._per_key_period, holder)
            period = _expiry(limit)
            return self._hit_local(limit, _bucket(key_id, period), period, holder)
        return None

    async def hit_key(self, key_id: str, limit: RateLimitItem | None = None) -> Decision:
        if self._local is not None:
            decision = self.hit_key_now(key_id, limit)
            assert decision is not None
            return decision
        # With Redis, `limits` names each counter by the limit's amount and period already.
        return await self._hit_shared(self._per_key if limit is None else limit, "key", key_id)

    async def hit_anon(self, address: str) -> Decision:
        if self._local is not None:
            return self._hit_local(self._anon, "anon/" + hash_address(address), self._anon_period)
        return await self._hit_shared(self._anon, "anon", hash_address(address))

    async def anon_exhausted(self, address: str) -> bool:
        """True when this address may not fail again yet: spare the database its lookups."""
        if self._local is not None:
            count = self._local.count("anon/" + hash_address(address), self._clock())
            return count >= self._anon.amount
        if self._storage_down():
            return False
        try:
            return not await self._limiter.test(self._anon, "anon", hash_address(address))
        except StorageError:
            self._mark_down("rate limit storage unreachable: requests are not being limited")
            return False

    async def sync(self) -> None:
        """Share this process's counts through the database (in database mode; else nothing).

        Adds the hits counted here since the last sync to the shared rows and reads back every
        process's totals for the windows this process uses, in one transaction run off the event
        loop; requests go on being decided meanwhile. Deletes ended windows once a minute. When the
        database fails, the hits are kept for the next sync and it is retried after a few seconds.
        """
        self.sync_cpu = 0.0
        store, local = self._store, self._local
        if store is None or local is None or self._storage_down():
            return
        now = self._clock()
        hits, watch = local.take(now)
        prune_before = int(now) - PRUNE_GRACE if now >= self._next_prune else None
        if not hits and not watch and prune_before is None:
            return
        try:
            exchanged = await anyio.to_thread.run_sync(_exchange, store, hits, watch, prune_before)
        except Exception as exc:
            local.restore(hits)
            if not isinstance(exc, SQLAlchemyError):
                raise
            self._mark_down(
                "rate limit database unreachable: each process counts on its own until it answers"
            )
            return
        totals, self.sync_cpu = exchanged
        local.apply(totals)
        if prune_before is not None:
            self._next_prune = now + PRUNE_EVERY
        if self._down_until:
            self._down_until = 0.0
            log.info("rate limit database reachable again: counts are shared")

    def _hit_local(
        self, item: RateLimitItem, key: str, period: int, holder: HoldsWindow | None = None
    ) -> Decision:
        assert self._local is not None
        now = self._clock()
        count, resets_at = self._local.hit(key, period, now, item.amount, holder)
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
            self._mark_down("rate limit storage unreachable: requests are not being limited")
            return unlimited
        reset_after = max(0, math.ceil(stats.reset_time - time.time()))
        return Decision(allowed, item.amount, stats.remaining, reset_after)

    def _storage_down(self) -> bool:
        return self._down_until > 0 and time.monotonic() < self._down_until

    def _mark_down(self, message: str) -> None:
        # Try the storage again in a few seconds, not on every request: a Redis that hangs
        # would otherwise add its timeout to each one.
        now = time.monotonic()
        self._down_until = now + self._retry_after
        if now - self._warned_at > 60:
            self._warned_at = now
            log.warning(message, exc_info=True)


def key_bucket(key_id: str) -> str:
    """The bucket of a key's requests under the server's default limit."""
    return "key/" + key_id


def _bucket(key_id: str, period: int) -> str:
    return f"key/{key_id}/{period}"


@functools.cache
def _expiry(item: RateLimitItem) -> int:
    """The item's period in seconds; ``get_expiry`` computes it anew each time it is asked."""
    return item.get_expiry()


def _exchange(
    store: RateWindowStore, hits: Sequence[WindowHits], watch: Sequence[WindowId], prune_before: int | None
) -> tuple[dict[WindowId, int], float]:
    """The totals, and the CPU seconds this thread spent on them (not the time it waited)."""
    started = time.thread_time()
    # Pruning first: if it fails, nothing was added, and the hits are kept for the next sync.
    if prune_before is not None:
        store.prune(prune_before)
    totals = store.add(hits, watch)
    return totals, time.thread_time() - started


class HoldsWindow(Protocol):
    """Where the limiter notes a key's running window: the key's cached entry (auth/cache.py).

    One holder, one bucket: an entry is the key's, and its bucket (its limit) is fixed while it is
    cached. A noted window that has ended is looked up again, so a holder never counts in a window
    the limiter no longer keeps. Read-only to everyone else: the limiter sets it as a frozen
    dataclass's field is set, with ``object.__setattr__``."""

    @property
    def window(self) -> list[int] | None: ...


class _Windows:
    """Fixed windows aligned to the clock, one per key.

    ``{key: [ends_at, count, unshared, start, limit, shared_at, hit_at]}``: ``shared_at`` is the
    sync that last sent its hits, ``hit_at`` the sync round in which it was last hit.

    ``count`` is what decisions use: in database mode, every process's hits as of the last sync
    plus this process's since; ``unshared`` is this process's hits not yet sent (in local mode it
    just grows with the window). Expired windows are swept, so memory stays bounded by the keys
    and addresses seen within one period.

    With ``track`` (database mode) a sync looks only at the windows that can have changed: those
    hit since the last one (listed by ``hit`` the first time each is hit in a round) and those whose
    hits it shares (past a twentieth of their limit). With tens of thousands of keys in use, each
    far below its limit, walking every window every 100 ms held the event loop for tens of
    milliseconds each time.
    """

    def __init__(self, sweep_every: float = 60.0, *, track: bool = False) -> None:
        self._windows: dict[str, list[int]] = {}
        #: Syncs so far: a window remembers the one that last shared its hits.
        self._round = 0
        self._sweep_every = sweep_every
        self._next_sweep = 0.0
        self._track = track
        #: Keys hit in this round, each once; keys whose current window is shared (read back).
        self._hit: list[str] = []
        self._shared: set[str] = set()
        #: period -> (start, end) of its current window, shared by every window of that period.
        self._bounds: dict[int, tuple[int, int]] = {}

    def hit(
        self, key: str, period: int, now: float, limit: int = 0, holder: HoldsWindow | None = None
    ) -> tuple[int, int]:
        # The window noted on the key's cached entry, while it runs: no probe of the dictionary,
        # whose entries, with tens of thousands of keys in use, are in memory gone cold. A running
        # window is always the dictionary's (only ended ones are swept), so one that has ended is
        # looked up there again.
        window = holder.window if holder is not None else None
        if window is None or window[0] <= now:
            window = self._current(key, period, now, limit)
            if holder is not None:
                # The entry is frozen for what the request reads; this slot is the limiter's.
                object.__setattr__(holder, "window", window)
        window[1] += 1
        window[2] += 1
        # Listed for the next sync once a round, and only from a twentieth of the limit on: below
        # it the sync shares nothing (take), and with tens of thousands of keys in use, each far
        # below its limit, listing them cost every request an append and every sync a walk.
        if self._track and window[6] != self._round and window[1] * SHARE_FROM >= window[4]:
            window[6] = self._round
            self._hit.append(key)
        return window[1], window[0]

    def _current(self, key: str, period: int, now: float, limit: int) -> list[int]:
        """The key's running window, started (again) if it has none."""
        window = self._windows.get(key)
        if window is None or window[0] <= now:
            start = int(now // period) * period
            bounds = self._bounds.get(period)
            if bounds is None or bounds[0] != start:
                bounds = self._bounds[period] = (start, start + period)
            # Every window of a period shares its start and end: the int objects each request
            # compares (window[0]) are then one, in cache, not one a key (docs/PERFORMANCE.md).
            fresh = (bounds[1], 0, 0, bounds[0], limit, -2, -1)
            if window is None:
                window = self._windows[key] = list(fresh)
            else:
                # The key's expired window, started again in place: a list lives as long as its
                # key is in use, where a new one each period for each key in use would make as
                # many objects for the garbage collector's young passes to walk (docs/PERFORMANCE.md).
                window[:] = fresh
            if now >= self._next_sweep:
                self._sweep(now)
        return window

    def count(self, key: str, now: float) -> int:
        window = self._windows.get(key)
        return window[1] if window is not None and window[0] > now else 0

    def take(self, now: float) -> tuple[list[WindowHits], list[WindowId]]:
        """The unshared hits of the current windows worth sharing (now counted as shared), and the
        other shared windows, whose totals the other processes may have moved since.

        A window's hits are shared once its count reaches 1/SHARE_FROM of its limit: below that,
        no decision of any process is near the limit, and with many keys in use, each used far
        below its limit (tens of thousands of keys, each a few times a minute), sharing every hit
        cost a database row a request. So with N processes, a key may pass its limit by at most
        (N - 1) x limit / SHARE_FROM requests more than the one-interval bound: nothing for limits
        under SHARE_FROM, whose every hit is shared, 5% of the limit a process beyond.

        A window hit here learns every process's total from its own upsert. Once shared, it is
        read back at every later sync of its window, hit here or not: another process may share
        its hits at any time (its syncs lag behind under load), and a count that waited for this
        process's next hit to learn them let that hit, and those of the next 100 ms, pass the
        limit. Reading back costs a row a sync for each window past a twentieth of its limit, the
        windows whose hits are shared anyway; keys far below their limit cost nothing.
        """
        hits: list[WindowHits] = []
        watch: list[WindowId] = []
        self._round += 1
        current = self._round
        windows = self._windows
        shared = self._shared
        for key in self._hit:
            window = windows.get(key)
            if window is None:
                continue
            ends_at, count, unshared, start, limit, _, _ = window
            if ends_at <= now or not unshared or count * SHARE_FROM < limit:
                continue
            hits.append(WindowHits(key, start, ends_at, unshared))
            window[2] = 0
            window[5] = current
            shared.add(key)
        for key in list(shared):
            window = windows.get(key)
            if window is None or window[0] <= now or window[1] * SHARE_FROM < window[4]:
                shared.discard(key)  # ended (a new window is shared again from its twentieth)
            elif window[5] != current:
                watch.append((key, window[3]))
        self._hit = []
        return hits, watch

    def restore(self, hits: Sequence[WindowHits]) -> None:
        """Hits that could not be shared: unshared again, for the next sync."""
        for bucket, start, _, count in hits:
            window = self._windows.get(bucket)
            if window is not None and window[3] == start:
                window[2] += count
                if window[6] != self._round:
                    window[6] = self._round
                    self._hit.append(bucket)

    def apply(self, totals: dict[WindowId, int]) -> None:
        """Every process's totals, read back: the count is those plus what was hit here since."""
        for (key, start), total in totals.items():
            window = self._windows.get(key)
            if window is not None and window[3] == start:
                window[1] = total + window[2]
                if window[1] * SHARE_FROM >= window[4]:
                    self._shared.add(key)

    def _sweep(self, now: float) -> None:
        self._windows = {k: w for k, w in self._windows.items() if w[0] > now}
        self._next_sweep = now + self._sweep_every
