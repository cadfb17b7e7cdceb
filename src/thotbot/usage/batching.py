"""What the usage recorder and the request log share: batches written off the request path.

Both count requests in bounded memory (a *window*), and a background task hands the window to a
worker thread to write. This base holds the part that is the same for both: one flush at a time;
a window whose write fails is merged back into the next one (the database may be down), unless the
database refused that very batch ``MAX_REFUSALS`` times in a row (a constraint or a value, not an
outage), when it is dropped rather than block every later request's data behind it; one warning
per outage, with the traceback the first time, and one line when writes succeed again.

A subclass says what a window is and how to write, merge back, describe and drop one.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy.exc import DataError, IntegrityError

from thotbot.storage.pacing import paced

__all__ = ["ABSORB_EVERY", "FLUSH_SHARE", "MAX_REFUSALS", "MIN_ENTRIES_TO_PRICE", "SPREAD", "BatchRecorder"]

log = logging.getLogger("thotbot.usage")

#: A batch the database refuses (not an outage: a constraint or a value) this many times is dropped.
MAX_REFUSALS = 3
#: A flush of fewer entries does not price the next ones (next_flush_cpu): its cost is mostly what
#: every flush pays (a transaction, a look at which keys exist), and once divided by one entry it
#: would price a burst of 5,000 new keys at minutes of CPU.
MIN_ENTRIES_TO_PRICE = 100
#: While a flush computes, its worker thread takes at most this share of the time (storage/pacing.py):
#: the event loop keeps three quarters of the interpreter, where it had one half.
FLUSH_SHARE = 0.25
#: Requests a recorder holds as they came before one pass counts them into its window (_absorb).
ABSORB_EVERY = 256
#: A pass counts request by request when its requests name more than 1/SPREAD as many keys (tens
#: of thousands in use), and together (Counter, in C) when fewer, as one client's do.
SPREAD = 8


class _Window(Protocol):
    def __len__(self) -> int: ...


W = TypeVar("W", bound=_Window)
R = TypeVar("R")


class BatchRecorder(Generic[W, R]):
    #: What the log lines call the data: "usage", "the request log".
    what = "data"
    #: The period a window counts requests by, in seconds (a day, an hour), and where a request's
    #: time is in what ``record`` appends.
    period = 86_400
    time_of: Callable[[Any], float]

    def __init__(self) -> None:
        #: Requests recorded since the last pass, as ``record`` appended them (at most ABSORB_EVERY).
        self._arrived: list[Any] = []
        #: The current period's number, one int object for every slot of the period: the slots'
        #: tuples then hold the very object each request's compares with, by identity, where each
        #: slot held an int of its own, read from cold memory on every request.
        self._period_number = -1
        self._flushing = False
        self._failing = False
        self._failures_in_a_row = 0
        self._refusals = 0
        #: CPU seconds the last flush's write took in its worker thread (0 when it failed): what
        #: the flush costs the process, whatever time it spent waiting on the database. Divided by
        #: the entries written, it prices the next flush (next_flush_cpu).
        self.flush_cpu = 0.0
        #: The last written flush's CPU seconds per entry of its window (next_flush_cpu).
        self._cpu_per_entry = 0.0

    async def flush(self, *, final: bool = False) -> int:
        """Write what is pending in a worker thread; return the number of requests written.

        ``final``: the server has stopped serving, so the write takes the whole interpreter rather
        than a share (FLUSH_SHARE) left to requests there are no more of: paced, the last flush of
        50,000 keys took four times its CPU (several seconds) before the process could exit.
        """
        while self._flushing:
            await anyio.sleep(0.01)
        self._flushing = True
        try:
            written = await self._flush_window(1.0 if final else FLUSH_SHARE)
            await self._maintain()
            return written
        finally:
            self._flushing = False

    async def _flush_window(self, share: float) -> int:
        window = self._take()
        if not len(window):
            self._written(window, None)
            return 0
        written = dropped = False
        result: R | None = None
        try:
            result = await anyio.to_thread.run_sync(self._paced_write, window, share)
            written = True
        except Exception as exc:
            # The edge of a background task: the database may be down. Keep the batch for the next
            # flush, and never let a request see this.
            self._failed()
            self._failures_in_a_row += 1
            self._refusals = self._refusals + 1 if isinstance(exc, IntegrityError | DataError) else 0
            if self._refusals >= MAX_REFUSALS:
                # Not an outage: the database refuses this batch itself. Drop it rather than keep
                # every later request's data queued behind it for ever.
                log.error(
                    "%s refused %d times, dropped: %s", self.what, self._refusals, self._describe(window)
                )
                self._drop(window)
                self._refusals = 0
                dropped = True
            else:
                log.warning(
                    "could not write %s (%s); keeping it to retry",
                    self.what,
                    self._describe(window),
                    exc_info=not self._failing,
                )
            self._failing = True
        finally:
            if not (written or dropped):
                # Also on cancellation: a shutdown that interrupts a flush still writes it last.
                self._restore(window)
        if not written:
            return 0
        if len(window) >= MIN_ENTRIES_TO_PRICE:
            self._cpu_per_entry = self.flush_cpu / len(window)
        if self._failing:
            log.info("%s written again after %d failed flushes", self.what, self._failures_in_a_row)
            self._failures_in_a_row = 0
            self._failing = False
        return self._written(window, result)

    @property
    def next_flush_cpu(self) -> float:
        """CPU seconds a flush of what is pending now would take, at the last written flush's cost
        per entry: it grows with the keys in use before a flush, not after one. 0 before a flush of
        MIN_ENTRIES_TO_PRICE entries or more, and while writes fail (a retry waits on the database,
        which costs no CPU)."""
        if self._failing:
            return 0.0
        return self._cpu_per_entry * self.pending

    def _paced_write(self, window: W, share: float) -> R:
        with paced(share):
            return self._write(window)

    def _absorb(self) -> None:
        """Count the requests recorded since the last pass into the window (``_absorb_period``): one
        pass for all, or across a period's end (or a clock that stepped), one a run of one period."""
        arrivals, self._arrived = self._arrived, []
        if not arrivals:
            return
        time_of, period = self.time_of, self.period
        number = int(time_of(arrivals[0]) // period)
        if number == int(time_of(arrivals[-1]) // period):
            self._absorb_period(self._canonical(number), arrivals)
            return
        for number, run in itertools.groupby(arrivals, key=lambda a: int(time_of(a) // period)):
            self._absorb_period(self._canonical(number), list(run))

    def _canonical(self, number: int) -> int:
        if number == self._period_number:
            return self._period_number
        self._period_number = number
        return number

    # What a subclass provides.

    def _absorb_period(self, number: int, arrivals: list[Any]) -> None:
        """Count requests of one period (a day's number, an hour's) into the window."""
        raise NotImplementedError

    @property
    def pending(self) -> int:
        """Entries held in memory now, as ``len`` counts a window."""
        raise NotImplementedError

    def _take(self) -> W:
        """The window recorded so far, replaced by an empty one."""
        raise NotImplementedError

    def _write(self, window: W) -> R:
        """Write a window; runs in a worker thread, on a window no other code touches any more."""
        raise NotImplementedError

    def _restore(self, old: W) -> None:
        """Merge a window whose write failed into the current one, under the same caps."""
        raise NotImplementedError

    def _describe(self, window: W) -> str:
        """What a window holds, for a log line: "12 requests, 3 keys"."""
        raise NotImplementedError

    def _failed(self) -> None:
        """Count a failed write in the recorder's statistics."""
        raise NotImplementedError

    def _drop(self, window: W) -> None:
        """Count a window the database refused for good in the recorder's statistics."""
        raise NotImplementedError

    def _written(self, window: W, result: R | None) -> int:
        """Account for a written window (``result`` is ``_write``'s; None for an empty window, which
        was not written); return the number of requests it held."""
        raise NotImplementedError

    async def _maintain(self) -> None:
        """Work after each flush (salts, trimming, pruning); nothing by default."""
