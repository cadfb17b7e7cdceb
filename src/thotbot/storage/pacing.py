"""Pacing a worker thread's CPU, so that the event loop keeps the interpreter while a batch is written.

A usage or request-log flush runs in a worker thread. While it runs Python code, it and the event
loop take the interpreter in turns (a millisecond each, `sys.setswitchinterval`): requests then go
at half speed for as long as the flush computes, and with tens of thousands of keys in use that is
a second or more, every minute or so, which was most of the loop's stalls of 5 ms and more
(`bench/loop_stalls.py`, docs/PERFORMANCE.md). Inside ``paced(share)``, each call to ``pace()``
that finds the thread has computed for a millisecond since its last rest sleeps long enough that
the thread takes at most ``share`` of the time; the loop has the interpreter meanwhile. Outside it,
``pace()`` does nothing: the same code called from a request or a test runs at full speed.

The loops that build a batch call ``pace()`` every few hundred rows, and between statements.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

__all__ = ["EVERY", "pace", "paced", "stepped"]

#: Rows between two calls to pace() in a loop: a few hundred microseconds of work at most.
EVERY = 256
#: CPU time a paced thread computes between two rests.
BURST = 0.001

_state = threading.local()
T = TypeVar("T")


@contextlib.contextmanager
def paced(share: float) -> Iterator[None]:
    """Within this, the current thread's pace() calls keep it to ``share`` (0 < share <= 1) of the time."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], not {share}")
    _state.rest = 1 / share - 1
    _state.since = time.thread_time()
    try:
        yield
    finally:
        _state.rest = None


def pace() -> None:
    """Rest, if this thread is paced and has computed for BURST since its last rest."""
    rest = getattr(_state, "rest", None)
    if not rest:
        return
    spent = time.thread_time() - _state.since
    if spent >= BURST:
        time.sleep(spent * rest)
        _state.since = time.thread_time()


def stepped(items: Iterable[T]) -> Iterator[T]:
    """``items``, with a pace() before every EVERY of them (taken in C a step at a time)."""
    iterator = iter(items)
    while True:
        pace()
        step = list(islice(iterator, EVERY))
        if not step:
            return
        yield from step
