"""UsageRecorder: counts every authenticated request in bounded memory and writes batches off the
request path, keeping a batch whose write failed until a later flush succeeds."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import Protocol

import anyio
import anyio.to_thread

from thotbot.core.memo import Memo
from thotbot.storage import KeyUsage
from thotbot.storage.pacing import stepped
from thotbot.storage.usage import AgentCount, ClientCount, DayCount, UsageBatch
from thotbot.usage.batching import ABSORB_EVERY, SPREAD, BatchRecorder

__all__ = ["DisabledRecorder", "RecorderStats", "UsageRecorder", "UsageWriter"]

log = logging.getLogger("thotbot.usage")

DAY = 86_400
_EPOCH = date(1970, 1, 1)
#: Distinct (key, day, User-Agent) entries kept between two flushes, in all and for one key.
MAX_ENTRIES = 10_000
MAX_AGENTS_PER_KEY = 1_000
#: Distinct (key, day, hashed client address) entries kept between two flushes.
MAX_CLIENTS = 10_000
#: Client-address digests remembered for the requests that follow (see _client_digest).
MAX_DIGESTS = 4096
PRUNE_EVERY = 3600.0


class UsageWriter(Protocol):
    def write(self, batch: UsageBatch) -> None: ...

    def ensure_salts(self, days: Iterable[date]) -> dict[date, bytes]: ...

    def prune(self, keep_since: date, salts_since: date) -> int: ...


@dataclass
class RecorderStats:
    """Lifetime counters, for logs, tests and the benchmark."""

    written: int = 0
    #: Requests counted only in their key's per-day total, their User-Agent being over the cap.
    unitemised: int = 0
    #: Client-address hashes not kept, being over the cap (their requests are still counted).
    clients_dropped: int = 0
    failed_flushes: int = 0
    #: Requests in batches the database refused MAX_REFUSALS times in a row.
    dropped: int = 0


#: ``(count, first, last)`` of one (key, day, User-Agent) in a window: a tuple replaced on each
#: request rather than an object updated in place. A tuple of numbers is one the garbage collector
#: stops tracking at its first pass, so tens of thousands of keys in use add nothing to the
#: collector's later passes (an object with attributes stays tracked, and each pass of the young
#: generations walked them all: tens of milliseconds with every request waiting; docs/PERFORMANCE.md).
_Seen = tuple[int, float, float]
#: ``(count, last, user_agent)`` of a key's requests on one day over the caps (unitemised): the
#: count, and the time and User-Agent of the latest, in one tuple under one dictionary entry.
_Over = tuple[int, float, str | None]
#: ``(key_id, user_agent, time, client)`` of a request not yet counted into the window.
_Arrival = tuple[str, str | None, float, str | None]
_KEY = itemgetter(0)
_KEY_AGENT = itemgetter(0, 1)
_AT = itemgetter(2)
_KEY_CLIENT = itemgetter(0, 3)


class _Window:
    """What was recorded since the last flush; only the event loop's thread touches a live one."""

    __slots__ = ("agents", "agents_per_key", "clients", "clients_dropped", "overflow", "unitemised")

    def __init__(self) -> None:
        self.agents: dict[tuple[str, int, str | None], _Seen] = {}
        self.agents_per_key: dict[str, int] = {}
        #: Requests over the caps, by (key, day), with the latest one's time and User-Agent: an
        #: itemised request's are its slot's already, and the flush takes each key's latest of both.
        self.unitemised: dict[tuple[str, int], _Over] = {}
        self.clients: dict[tuple[str, int, bytes], int] = {}
        self.overflow = 0
        self.clients_dropped = 0

    @property
    def requests(self) -> int:
        return sum(seen[0] for seen in self.agents.values()) + sum(o[0] for o in self.unitemised.values())

    def __len__(self) -> int:
        return len(self.agents) + len(self.unitemised) + len(self.clients)

    def last_used(self) -> dict[str, tuple[float, str | None]]:
        """Each key's last use, time and User-Agent: its latest slot, or its latest unitemised request."""
        latest: dict[str, tuple[float, str | None]] = {}
        for (key_id, _, user_agent), (_, _, last) in stepped(self.agents.items()):
            _keep_later(latest, key_id, last, user_agent)
        for (key_id, _), (_, at, user_agent) in self.unitemised.items():
            _keep_later(latest, key_id, at, user_agent)
        return latest

    def keys(self) -> set[str]:
        return self.agents_per_key.keys() | {key_id for key_id, _ in self.unitemised}


class UsageRecorder(BatchRecorder["_Window", None]):
    """Aggregates requests per (key, UTC day, User-Agent) and per hashed client address.

    ``record`` appends a tuple; every ABSORB_EVERY requests one pass counts them (a few dict
    operations and, for each new client address, one keyed hash): no I/O, no lock, no thread hop. Memory
    is bounded whatever the traffic: past ``max_entries`` distinct User-Agents (or
    ``max_agents_per_key`` for one key) a request is still counted in its key's daily total, as
    "unitemised", and past ``max_clients`` its address hash is not kept. A batch whose write fails
    is merged back into the next one under the same caps (``BatchRecorder``).

    Client addresses are hashed at once with BLAKE2b keyed by a random salt per UTC day, shared by
    every instance through the database and deleted after two days; the raw address is never kept.
    """

    period = DAY
    time_of = _AT

    def __init__(
        self,
        store: UsageWriter,
        *,
        retention_days: int = 90,
        max_entries: int = MAX_ENTRIES,
        max_agents_per_key: int = MAX_AGENTS_PER_KEY,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self._store = store
        self._retention_days = retention_days
        self._max_entries = max_entries
        self._max_per_key = max_agents_per_key
        self._max_clients = max_clients
        self._clock = clock
        self._window = _Window()
        self._salts: dict[int, bytes] = {}
        self._digests: dict[int, bytes] = {}
        self._digests_day = -1
        self._shared_salt_days: set[int] = set()
        self._pruned_at = float("-inf")
        self.stats = RecorderStats()

    def record(self, key_id: str, now: float, user_agent: str | None, client: str | None = None) -> None:
        # A tuple appended; every ABSORB_EVERY requests, one pass counts them all (_absorb).
        arrived = self._arrived
        arrived.append((key_id, user_agent, now, client))
        if len(arrived) >= ABSORB_EVERY:
            self._absorb()

    def _absorb_period(self, day: int, arrivals: list[_Arrival]) -> None:
        if len(set(map(_KEY, arrivals))) * SPREAD > len(arrivals):
            self._count_each(day, arrivals)
        else:
            self._count_together(day, arrivals)

    def _count_each(self, day: int, arrivals: list[_Arrival]) -> None:
        """Count requests one at a time: what a pass does when they name many keys (with tens of
        thousands in use, each key and User-Agent once or twice a pass). Inline, with the window's
        dictionaries at hand: no call a request."""
        window = self._window
        agents, per_key, unitemised, clients = (
            window.agents,
            window.agents_per_key,
            window.unitemised,
            window.clients,
        )
        max_entries, max_per_key, max_clients = self._max_entries, self._max_per_key, self._max_clients
        digests: dict[str, bytes] = {}
        overflow = dropped = 0
        for key_id, user_agent, now, client in arrivals:
            slot = (key_id, day, user_agent)
            seen = agents.get(slot)
            if seen is not None:
                agents[slot] = (seen[0] + 1, seen[1], now)
            elif len(agents) < max_entries and per_key.get(key_id, 0) < max_per_key:
                agents[slot] = (1, now, now)
                per_key[key_id] = per_key.get(key_id, 0) + 1
            else:
                other = (key_id, day)
                over = unitemised.get(other)
                # The count and the last use in one entry: with tens of thousands of keys in use, a
                # separate last-use entry replaced on every request cost 4% to 5% of it
                # (docs/PERFORMANCE.md, sixth and seventh passes).
                unitemised[other] = (1 if over is None else over[0] + 1, now, user_agent)
                overflow += 1
            if client:
                digest = digests.get(client)
                if digest is None:
                    digest = digests[client] = self._client_digest(day, client)
                place = (key_id, day, digest)
                count = clients.get(place)
                if count is not None:
                    clients[place] = count + 1
                elif len(clients) < max_clients:
                    clients[place] = 1
                else:
                    dropped += 1
        window.overflow += overflow
        window.clients_dropped += dropped

    def _count_together(self, day: int, arrivals: list[_Arrival]) -> None:
        """Count requests of a few keys (a client's, the usual case): Counter and dict count them in
        C, and Python touches each distinct (key, User-Agent) once a pass, where it did a dozen
        dictionary operations a request. Either way the window holds what a pass after each request
        would give it (tests/usage/test_absorb.py)."""
        window = self._window
        agents = window.agents
        pairs = list(map(_KEY_AGENT, arrivals))
        # Each pair's last request, by its index: of two, the later one is the one a dict keeps.
        lasts = dict(zip(pairs, range(len(pairs)), strict=True))
        firsts: dict[tuple[str, str | None], float] | None = None
        # Each key's requests over the caps: how many, and the index and User-Agent of the last.
        over: dict[str, tuple[int, int, str | None]] = {}
        for pair, count in Counter(pairs).items():
            key_id, user_agent = pair
            slot = (key_id, day, user_agent)
            seen = agents.get(slot)
            if seen is not None:
                agents[slot] = (seen[0] + count, seen[1], arrivals[lasts[pair]][2])
            elif self._has_room(window, key_id):
                if firsts is None:
                    firsts = dict(zip(reversed(pairs), map(_AT, reversed(arrivals)), strict=True))
                agents[slot] = (count, firsts[pair], arrivals[lasts[pair]][2])
                window.agents_per_key[key_id] = window.agents_per_key.get(key_id, 0) + 1
            else:
                last = lasts[pair]
                held = over.get(key_id)
                if held is None or held[1] < last:
                    over[key_id] = (count + (held[0] if held else 0), last, user_agent)
                else:
                    over[key_id] = (held[0] + count, held[1], held[2])
        for key_id, (count, last, user_agent) in over.items():
            # As one request at a time would: the latest request over the caps gives the time and
            # User-Agent, whatever the clock said before it.
            other = (key_id, day)
            earlier = window.unitemised.get(other)
            window.unitemised[other] = (count + (earlier[0] if earlier else 0), arrivals[last][2], user_agent)
            window.overflow += count
        for (key_id, client), count in Counter(map(_KEY_CLIENT, arrivals)).items():
            if client:
                self._count_client(window, key_id, day, client, count)

    @property
    def pending(self) -> int:
        """Entries held in memory now: what the caps bound."""
        self._absorb()
        return len(self._window)

    def _has_room(self, window: _Window, key_id: str) -> bool:
        return (
            len(window.agents) < self._max_entries
            and window.agents_per_key.get(key_id, 0) < self._max_per_key
        )

    def _count_client(self, window: _Window, key_id: str, day: int, client: str, requests: int) -> None:
        digest = self._client_digest(day, client)
        slot = (key_id, day, digest)
        count = window.clients.get(slot)
        if count is not None:
            window.clients[slot] = count + requests
        elif len(window.clients) < self._max_clients:
            window.clients[slot] = requests
        else:
            window.clients_dropped += requests

    def _client_digest(self, day: int, client: str) -> bytes:
        # Most requests come from addresses seen a moment ago. Their digests are remembered under
        # the process's own keyed hash of the address (Python's randomised SipHash), never under
        # the address, and forgotten every day, when full, and when a salt changes.
        token = hash(client)
        digest = self._digests.get(token)
        if digest is not None and day == self._digests_day:
            return digest
        if day != self._digests_day or len(self._digests) >= MAX_DIGESTS:
            self._digests, self._digests_day = {}, day
        salt = self._salts.get(day)
        if salt is None:
            # No shared salt yet (the database was unreachable): a local one still never keeps the
            # address, at the price of counting a client twice across instances on that day.
            salt = self._salts[day] = secrets.token_bytes(32)
        digest = hashlib.blake2b(client.encode("utf-8", "replace"), key=salt, digest_size=16).digest()
        self._digests[token] = digest
        return digest

    what = "usage"

    def _take(self) -> _Window:
        self._absorb()
        window, self._window = self._window, _Window()
        return window

    def _describe(self, window: _Window) -> str:
        return f"{window.requests} requests, {len(window.keys())} keys"

    def _failed(self) -> None:
        self.stats.failed_flushes += 1

    def _drop(self, window: _Window) -> None:
        self.stats.dropped += window.requests

    def _written(self, window: _Window, result: None) -> int:
        requests = window.requests
        self.stats.written += requests
        self.stats.unitemised += window.overflow
        self.stats.clients_dropped += window.clients_dropped
        return requests

    def _write(self, window: _Window) -> None:
        """Runs in a worker thread, on a window no other code touches any more."""
        started = time.thread_time()
        self.flush_cpu = 0.0
        # Tuples, not lists or objects, here and in the store: the collector stops tracking them at
        # its first pass, where each tracked row of a flush of tens of thousands of keys was walked
        # again by the passes that followed it (_Seen above).
        days: dict[tuple[str, int], tuple[int, int]] = {}  # (requests, unitemised)
        agents: list[AgentCount] = []
        for (key_id, day, user_agent), (count, first, last) in stepped(window.agents.items()):
            requests, unitemised = days.get((key_id, day), (0, 0))
            days[key_id, day] = (requests + count, unitemised)
            agents.append(AgentCount(key_id, user_agent, _utc(first), _utc(last), count))
        for slot, (count, _, _) in window.unitemised.items():
            requests, unitemised = days.get(slot, (0, 0))
            days[slot] = (requests + count, unitemised + count)
        dates: Memo[int, date] = Memo(_date)  # a day or two a flush, for thousands of rows
        batch = UsageBatch(
            days=[DayCount(k, dates[d], n, u) for (k, d), (n, u) in stepped(days.items())],
            agents=agents,
            clients=[ClientCount(k, dates[d], h, n) for (k, d, h), n in stepped(window.clients.items())],
            last_used={k: KeyUsage(_utc(ts), ua) for k, (ts, ua) in stepped(window.last_used().items())},
        )
        self._store.write(batch)
        self.flush_cpu = time.thread_time() - started
        if window.overflow or window.clients_dropped:
            log.warning(
                "usage over the memory cap: %d requests counted without their User-Agent, "
                "%d client hashes not kept",
                window.overflow,
                window.clients_dropped,
            )

    def _restore(self, old: _Window) -> None:
        """Merge a batch whose write failed into the current window, under the same caps."""
        self._absorb()  # the requests that came meanwhile are newer: theirs stays
        window = self._window
        for slot, seen in old.agents.items():
            mine = window.agents.get(slot)
            if mine is not None:
                window.agents[slot] = (mine[0] + seen[0], min(mine[1], seen[1]), max(mine[2], seen[2]))
            elif self._has_room(window, slot[0]):
                window.agents[slot] = seen
                window.agents_per_key[slot[0]] = window.agents_per_key.get(slot[0], 0) + 1
            else:
                _add_over(window.unitemised, (slot[0], slot[1]), (seen[0], seen[2], slot[2]))
                window.overflow += seen[0]
        for other, over in old.unitemised.items():
            _add_over(window.unitemised, other, over)
        window.overflow += old.overflow
        for client, count in old.clients.items():
            if client in window.clients or len(window.clients) < self._max_clients:
                window.clients[client] = window.clients.get(client, 0) + count
            else:
                window.clients_dropped += 1
        window.clients_dropped += old.clients_dropped

    async def _maintain(self) -> None:
        """Load the shared salts of today and tomorrow, and prune old aggregates once an hour."""
        now = self._clock()
        today = int(now // DAY)
        for day in [d for d in self._salts if d < today - 1]:
            del self._salts[day]
            self._shared_salt_days.discard(day)
        wanted = [today, today + 1]
        need_salts = not self._shared_salt_days.issuperset(wanted)
        need_prune = now - self._pruned_at >= PRUNE_EVERY
        if not (need_salts or need_prune):
            return
        try:
            salts = await anyio.to_thread.run_sync(self._maintenance, wanted, need_prune, today)
        except Exception:
            # The edge of a background task: retried on the next flush.
            log.warning("usage maintenance failed; will retry", exc_info=not self._failing)
            return
        for day, salt in salts.items():
            if self._salts.get(day) != salt:
                self._salts[day] = salt
                self._digests = {}
            self._shared_salt_days.add(day)
        if need_prune:
            self._pruned_at = now

    def _maintenance(self, days: list[int], prune: bool, today: int) -> dict[int, bytes]:
        salts = self._store.ensure_salts([_date(d) for d in days])
        if prune:
            deleted = self._store.prune(_date(today - self._retention_days + 1), _date(today - 1))
            if deleted:
                log.info("pruned %d usage rows older than %d days", deleted, self._retention_days)
        return {(d - _EPOCH).days: salt for d, salt in salts.items()}


class DisabledRecorder(UsageRecorder):
    """Records nothing: THOTBOT_USAGE_RECORDING=off, for measuring what recording costs."""

    def record(self, key_id: str, now: float, user_agent: str | None, client: str | None = None) -> None:
        return

    async def flush(self, *, final: bool = False) -> int:
        return 0


def _keep_later(
    uses: dict[str, tuple[float, str | None]], key_id: str, at: float, user_agent: str | None
) -> None:
    """Note a use of the key in ``uses`` unless it holds a later one."""
    seen = uses.get(key_id)
    if seen is None or seen[0] < at:
        uses[key_id] = (at, user_agent)


def _add_over(overs: dict[tuple[str, int], _Over], slot: tuple[str, int], over: _Over) -> None:
    """Add ``over`` to the requests over the caps held for ``slot``, keeping the later last use."""
    mine = overs.get(slot)
    if mine is not None:
        later = mine if mine[1] >= over[1] else over
        over = (mine[0] + over[0], later[1], later[2])
    overs[slot] = over


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _date(day: int) -> date:
    return _EPOCH + timedelta(days=day)
