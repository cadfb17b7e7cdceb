"""RequestLogRecorder: each key's recent requests and its requests per hour by endpoint and code.

The guard hands it every request made with a known key (refused or not). ``record`` appends a tuple;
every ABSORB_EVERY requests one pass puts them in the window, each key's newest in its bounded deque
and a count per key, hour, endpoint and code: no I/O, no lock, no thread hop, no regular
expression. The flush, in a worker thread, names each path's endpoint (its route template), writes
the recent requests as inserts and the counts as additive upserts, and keeps a batch whose write
failed for the next flush. Trimming to the newest 200 per key (a key once this process has written
TRIM_AFTER of its requests since it last trimmed it) and the 30-day retention run in the background
too, every TRIM_EVERY and PRUNE_EVERY seconds.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Protocol

import anyio.to_thread

from thotbot.core.memo import Memo
from thotbot.core.redaction import redact_cut
from thotbot.core.useragents import clean
from thotbot.storage.pacing import stepped
from thotbot.storage.request_log import KEEP_PER_KEY, HourCount, RequestEntry, RequestLogBatch
from thotbot.usage.batching import ABSORB_EVERY, SPREAD, BatchRecorder

__all__ = ["RequestLogRecorder", "RequestLogStats", "RequestLogWriter", "Route"]

log = logging.getLogger("thotbot.usage")

HOUR = 3600
#: Recent requests held between two flushes, over all keys (each key holds at most KEEP_PER_KEY).
MAX_ENTRIES = 20_000
#: Keys whose recent requests are held between two flushes.
MAX_KEYS = 5_000
#: Distinct (key, hour, method, path, code) counters held between two flushes.
MAX_COUNTS = 20_000
#: Keys remembered for the next trim; past it, the next trim trims every key it can name.
MAX_TRIM_KEYS = 50_000
TRIM_EVERY = 30.0
#: A key is trimmed once this process has written this many of its requests since it last trimmed
#: it: a trim ranks every stored request of its keys (on PostgreSQL 1.5 s for 5,000 keys of 230
#: requests even with nothing to delete), so a key used a few times a minute is not trimmed every
#: 30 s. A key then holds at most KEEP_PER_KEY + TRIM_AFTER requests for each process writing it.
TRIM_AFTER = KEEP_PER_KEY // 4
PRUNE_EVERY = 3600.0
RETENTION_DAYS = 30
_PATH = 512
_METHOD = 16
_CODE = 64
_ENDPOINT = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: (key, arrival time, method, path, status, problem code, User-Agent, duration in seconds): a
#: request as recorded, and as each key's recent ones hold it.
_Arrival = tuple[str, float, str, str, int, str | None, str | None, float]
_KEY = itemgetter(0)
_SLOT = itemgetter(0, 2, 3, 5)  # key, method, path, problem code
_AT = itemgetter(1)
#: A route: its methods, the regular expression of its path, and its template ("/v1/keys/{key_id}").
Route = tuple[Iterable[str], "re.Pattern[str]", str]


class RequestLogWriter(Protocol):
    def write(self, batch: RequestLogBatch) -> None: ...

    def trim(self, key_ids: Iterable[str], keep: int = KEEP_PER_KEY) -> int: ...

    def prune(self, before: datetime) -> int: ...


@dataclass
class RequestLogStats:
    """Lifetime counters, for logs and tests."""

    written: int = 0
    #: Requests left out of the recent log, over MAX_ENTRIES or MAX_KEYS between two flushes.
    dropped_entries: int = 0
    #: Requests left out of the hourly counts, over MAX_COUNTS between two flushes.
    dropped_counts: int = 0
    failed_flushes: int = 0
    #: Requests in batches the database refused MAX_REFUSALS times in a row.
    refused: int = 0


#: ``(requests, first, last, user_agent)`` of one key, hour, endpoint and code in a window: a
#: tuple replaced on each request, which the garbage collector stops tracking at its first pass,
#: where an object with attributes stayed tracked and was walked by each pass of the young
#: generations (see usage/recorder.py's _Seen).
_Count = tuple[int, float, float, str | None]


def _added(older: _Count, newer: _Count) -> _Count:
    """Both counts in one: from the earlier first time to the later last one, whose User-Agent stays."""
    requests, first, last, user_agent = older
    if newer[2] >= last:
        last, user_agent = newer[2], newer[3]
    return (requests + newer[0], min(first, newer[1]), last, user_agent)


class _Window:
    """What was recorded since the last flush; only the event loop's thread touches a live one."""

    __slots__ = ("counts", "dropped_counts", "dropped_entries", "entries", "recent")

    def __init__(self) -> None:
        #: Each key's newest requests, as they were recorded (key first: no tuple made again).
        self.recent: dict[str, deque[_Arrival]] = {}
        self.counts: dict[tuple[str, int, str, str, str | None], _Count] = {}
        self.entries = 0
        self.dropped_entries = 0
        self.dropped_counts = 0

    def __len__(self) -> int:
        return self.entries + len(self.counts)


class RequestLogRecorder(BatchRecorder["_Window", int]):
    """Each key's recent requests and its hourly counts; a failed write is kept for the next flush
    (``BatchRecorder``)."""

    what = "the request log"
    period = HOUR
    time_of = _AT

    def __init__(
        self,
        store: RequestLogWriter,
        *,
        retention_days: int = RETENTION_DAYS,
        max_entries: int = MAX_ENTRIES,
        max_keys: int = MAX_KEYS,
        max_counts: int = MAX_COUNTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self._store = store
        self._retention_days = retention_days
        self._max_entries = max_entries
        self._max_keys = max_keys
        self._max_counts = max_counts
        self._clock = clock
        self._window = _Window()
        self._routes: list[tuple[frozenset[str], re.Pattern[str], str]] = []
        #: Requests written for each key since this process last trimmed it.
        self._to_trim: dict[str, int] = {}
        self._trimmed_at = clock()
        self._pruned_at = float("-inf")
        self.stats = RequestLogStats()

    def use_routes(self, routes: Iterable[Route]) -> None:
        """The routes whose templates name the endpoints ("GET /v1/keys/{key_id}")."""
        self._routes = [(frozenset(methods), regex, template) for methods, regex, template in routes]

    def record(
        self,
        key_id: str,
        at: float,
        method: str,
        path: str,
        status: int,
        code: str | None,
        user_agent: str | None,
        duration: float,
    ) -> None:
        # A tuple appended; every ABSORB_EVERY requests, one pass puts them all in the window (as
        # usage/recorder.py's record does).
        arrived = self._arrived
        arrived.append((key_id, at, method, path, status, code, user_agent, duration))
        if len(arrived) >= ABSORB_EVERY:
            self._absorb()

    def _absorb_period(self, hour: int, arrivals: list[_Arrival]) -> None:
        keys = list(map(_KEY, arrivals))
        if keys[0] == keys[-1] and keys.count(keys[0]) == len(keys):
            self._keep(keys[0], arrivals)  # one key in use (the usual client): no grouping
        elif len(set(keys)) * SPREAD > len(arrivals):
            self._put_each(hour, arrivals)
            return
        else:
            by_key: dict[str, list[_Arrival]] = {key_id: [] for key_id in keys}
            for arrival in arrivals:
                by_key[arrival[0]].append(arrival)
            for key_id, held in by_key.items():
                self._keep(key_id, held)
        self._count_together(hour, arrivals)

    def _put_each(self, hour: int, arrivals: list[_Arrival]) -> None:
        """Put requests in the window one at a time: what a pass does when they name many keys (with
        tens of thousands in use, each once or twice a pass). Inline, with the window's dictionaries
        at hand: no call a request. Every way gives what a pass after each request would
        (tests/usage/test_absorb.py)."""
        window = self._window
        held, counts = window.recent, window.counts
        max_keys, max_entries, max_counts = self._max_keys, self._max_entries, self._max_counts
        entries, dropped_entries, dropped_counts = window.entries, 0, 0
        for arrival in arrivals:
            key_id, at, method, path, _, code, user_agent, _ = arrival
            recent = held.get(key_id)
            if recent is None:
                if len(held) >= max_keys or entries >= max_entries:
                    dropped_entries += 1
                else:
                    held[key_id] = deque((arrival,), maxlen=KEEP_PER_KEY)
                    entries += 1
            elif len(recent) == KEEP_PER_KEY:
                recent.append(arrival)  # the oldest goes
            elif entries < max_entries:
                recent.append(arrival)
                entries += 1
            else:
                dropped_entries += 1
            slot = (key_id, hour, method, path, code)
            count = counts.get(slot)
            if count is not None:
                counts[slot] = (count[0] + 1, count[1], at, user_agent)
            elif len(counts) < max_counts:
                counts[slot] = (1, at, at, user_agent)
            else:
                dropped_counts += 1
        window.entries = entries
        window.dropped_entries += dropped_entries
        window.dropped_counts += dropped_counts

    def _keep(self, key_id: str, arrivals: list[_Arrival]) -> None:
        """Add a key's requests, oldest first, to its recent ones, under the caps."""
        window = self._window
        held = len(arrivals)
        recent = window.recent.get(key_id)
        if recent is None:
            if len(window.recent) >= self._max_keys or window.entries >= self._max_entries:
                window.dropped_entries += held
                return
            recent = window.recent[key_id] = deque(maxlen=KEEP_PER_KEY)
        added = min(held, KEEP_PER_KEY - len(recent))  # past that, the oldest go
        room = self._max_entries - window.entries
        if added <= room:
            recent.extend(arrivals if held <= KEEP_PER_KEY else arrivals[-KEEP_PER_KEY:])
            window.entries += added
        else:
            recent.extend(arrivals[:room])
            window.entries += room
            window.dropped_entries += held - room

    def _count_together(self, hour: int, arrivals: list[_Arrival]) -> None:
        """Count requests of a few keys by (key, hour, endpoint, code): Counter and dict count them
        in C, and Python touches each distinct one once a pass (as usage/recorder.py's)."""
        window = self._window
        counts = window.counts
        slots = list(map(_SLOT, arrivals))
        lasts = dict(zip(slots, arrivals, strict=True))  # the later one wins: each slot's last request
        firsts: dict[tuple[str, str, str, str | None], float] | None = None
        for slot, requests in Counter(slots).items():
            key_id, method, path, code = slot
            last = lasts[slot]
            full = (key_id, hour, method, path, code)
            count = counts.get(full)
            if count is not None:
                counts[full] = (count[0] + requests, count[1], last[1], last[6])
            elif len(counts) < self._max_counts:
                if firsts is None:
                    firsts = dict(zip(reversed(slots), map(_AT, reversed(arrivals)), strict=True))
                counts[full] = (requests, firsts[slot], last[1], last[6])
            else:
                window.dropped_counts += requests

    @property
    def pending(self) -> int:
        """Entries and counters held in memory now: what the caps bound."""
        self._absorb()
        return len(self._window)

    def _take(self) -> _Window:
        self._absorb()
        window, self._window = self._window, _Window()
        return window

    def _describe(self, window: _Window) -> str:
        return f"{window.entries} entries"

    def _failed(self) -> None:
        self.stats.failed_flushes += 1

    def _drop(self, window: _Window) -> None:
        self.stats.refused += window.entries

    def _written(self, window: _Window, result: int | None) -> int:
        self._note_drops(window)
        if result is None:  # nothing was held: only its drops to note
            return 0
        to_trim = self._to_trim
        for key_id, recent in window.recent.items():
            to_trim[key_id] = to_trim.get(key_id, 0) + len(recent)
        self.stats.written += result
        return result

    def _note_drops(self, window: _Window) -> None:
        if window.dropped_entries or window.dropped_counts:
            self.stats.dropped_entries += window.dropped_entries
            self.stats.dropped_counts += window.dropped_counts
            log.warning(
                "request log over its memory cap: %d requests left out of the recent log, %d out of "
                "the hourly counts",
                window.dropped_entries,
                window.dropped_counts,
            )

    def _write(self, window: _Window) -> int:
        """Runs in a worker thread, on a window no other code touches any more."""
        started = time.thread_time()
        self.flush_cpu = 0.0
        # Thousands of keys, but a few methods, paths, User-Agents and hours: each distinct one is
        # cleaned, named or converted once a flush.
        endpoints: Memo[tuple[str, str], str] = Memo(lambda route: self._endpoint(*route))
        methods: Memo[str, str] = Memo(lambda method: _text(method, _METHOD))
        paths: Memo[str, str] = Memo(lambda path: _text(path, _PATH))
        agents: Memo[str | None, str | None] = Memo(clean)
        hour_starts: Memo[int, datetime] = Memo(lambda hour: _utc(hour * HOUR))
        requests = [
            RequestEntry(
                key_id,
                _utc(at),
                methods[method],
                paths[path],
                status,
                code[:_CODE] if code else None,
                agents[user_agent],
                max(0, min(int(duration * 1_000_000), 2**31 - 1)),
            )
            for key_id, recent in stepped(window.recent.items())
            for _, at, method, path, status, code, user_agent, duration in recent
        ]
        hours: dict[tuple[str, int, str, str], _Count] = {}
        for (key_id, hour, method, path, code), count in stepped(window.counts.items()):
            slot = (key_id, hour, endpoints[method, path], (code or "")[:_CODE])
            seen = hours.get(slot)
            hours[slot] = count if seen is None else _added(seen, count)
        batch = RequestLogBatch(
            requests=requests,
            hours=[
                HourCount(
                    key_id,
                    hour_starts[hour],
                    name,
                    code,
                    count,
                    _utc(first),
                    _utc(last),
                    agents[user_agent],
                )
                for (key_id, hour, name, code), (count, first, last, user_agent) in stepped(hours.items())
            ],
        )
        self._store.write(batch)
        self.flush_cpu = time.thread_time() - started
        return sum(count[0] for count in window.counts.values())

    def _endpoint(self, method: str, path: str) -> str:
        method = _text(method, _METHOD)
        for methods, regex, template in self._routes:
            if (method in methods or (method == "HEAD" and "GET" in methods)) and regex.match(path):
                return f"{method} {template}"[:_ENDPOINT]
        return f"{method} (other)"

    def _restore(self, old: _Window) -> None:
        """Merge a batch whose write failed into the current window, under the same caps."""
        self._absorb()  # the requests that came meanwhile are newer: theirs stays
        window = self._window
        for key_id, recent in old.recent.items():
            newer = window.recent.get(key_id)
            if newer is None and (
                len(window.recent) >= self._max_keys or window.entries >= self._max_entries
            ):
                window.dropped_entries += len(recent)
                continue
            merged: deque[_Arrival] = deque(recent, maxlen=KEEP_PER_KEY)
            merged.extend(newer or ())
            window.entries += len(merged) - len(newer or ())
            window.recent[key_id] = merged
        window.dropped_entries += old.dropped_entries
        for slot, count in old.counts.items():
            mine = window.counts.get(slot)
            if mine is not None:
                # The newer count's last User-Agent stays: _added keeps the later one.
                window.counts[slot] = _added(mine, count)
            elif len(window.counts) < self._max_counts:
                window.counts[slot] = count
            else:
                window.dropped_counts += count[0]
        window.dropped_counts += old.dropped_counts

    async def _maintain(self) -> None:
        """Trim the keys written TRIM_AFTER times or more since their last trim to their newest 200
        requests, every TRIM_EVERY seconds, and prune past the retention."""
        now = self._clock()
        full = len(self._to_trim) >= MAX_TRIM_KEYS
        due = now - self._trimmed_at >= TRIM_EVERY or full
        prune = now - self._pruned_at >= PRUNE_EVERY
        if not (due or prune):
            return
        keys: dict[str, int] = {}
        if due:
            # Past MAX_TRIM_KEYS keys remembered, every one of them (memory stays bounded).
            keys = {k: n for k, n in self._to_trim.items() if full or n >= TRIM_AFTER}
            for key_id in keys:
                del self._to_trim[key_id]
        if not (keys or prune):
            self._trimmed_at = now
            return
        try:
            await anyio.to_thread.run_sync(self._maintenance, set(keys), prune, now)
        except Exception:
            # The edge of a background task: retried after the next flush.
            log.warning("request log trim or prune failed; will retry", exc_info=not self._failing)
            if len(self._to_trim) + len(keys) <= MAX_TRIM_KEYS:
                for key_id, written in keys.items():
                    self._to_trim[key_id] = self._to_trim.get(key_id, 0) + written
            return
        if due:
            self._trimmed_at = now
        if prune:
            self._pruned_at = now

    def _maintenance(self, keys: set[str], prune: bool, now: float) -> None:
        if keys:
            self._store.trim(keys, KEEP_PER_KEY)
        if prune:
            deleted = self._store.prune(_utc(now) - timedelta(days=self._retention_days))
            if deleted:
                log.info("pruned %d request log rows older than %d days", deleted, self._retention_days)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _text(text: str, limit: int) -> str:
    """Cut to ``limit`` characters, key material redacted, control characters (NUL, which
    PostgreSQL refuses, among them) replaced."""
    text = redact_cut(text, limit)
    return text if text.isprintable() else _CONTROL.sub("\ufffd", text)
