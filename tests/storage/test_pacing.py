"""storage/pacing.py: a paced worker thread rests in proportion to the CPU it used, so the event loop
keeps the interpreter while a flush computes; unpaced code (a request, a test) never rests."""

from __future__ import annotations

import functools
import threading
from types import SimpleNamespace

import anyio
import pytest

from thotbot.storage import pacing
from thotbot.storage.pacing import EVERY, pace, paced, stepped
from thotbot.usage import UsageRecorder
from thotbot.usage.batching import FLUSH_SHARE


class Clock:
    """The thread's CPU clock and its sleeps, faked: pace() reads one and calls the other."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cpu = 100.0
        self.slept: list[float] = []
        fake = SimpleNamespace(thread_time=lambda: self.cpu, sleep=self.slept.append)
        monkeypatch.setattr("thotbot.storage.pacing.time", fake)


def test_a_paced_thread_rests_three_times_what_it_computed_at_a_quarter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock(monkeypatch)
    with paced(0.25):
        clock.cpu += 0.0004
        pace()  # under a millisecond since the start: no rest yet
        clock.cpu += 0.0008
        pace()
        clock.cpu += 0.002
        pace()
    clock.cpu += 0.005
    pace()  # outside: nothing

    assert clock.slept == pytest.approx([0.0036, 0.006])


def test_unpaced_code_never_rests(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    for _ in range(3):
        clock.cpu += 1.0
        pace()
    assert list(stepped(range(10 * EVERY))) == list(range(10 * EVERY))
    assert clock.slept == []
    with pytest.raises(ValueError, match="share"), paced(0):
        pass


def test_stepped_paces_every_step_and_keeps_every_item(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    seen = []
    with paced(0.5):
        for item in stepped(iter(range(3 * EVERY + 1))):
            seen.append(item)
            clock.cpu += 0.001 / EVERY  # a millisecond a step
    assert seen == list(range(3 * EVERY + 1))
    assert len(clock.slept) == 3


def test_a_usage_flush_writes_paced_in_its_worker_thread() -> None:
    seen: list[tuple[object, bool]] = []

    class Store:
        def write(self, batch: object) -> None:
            seen.append(
                (getattr(pacing._state, "rest", None), threading.current_thread() is threading.main_thread())
            )

        def ensure_salts(self, days: object) -> dict[object, bytes]:
            return {}

        def prune(self, keep_since: object, salts_since: object) -> int:
            return 0

    recorder = UsageRecorder(Store())  # type: ignore[arg-type]
    recorder.record("key_1", 1_777_000_000.0, "agent/1.0", "10.0.0.1")
    anyio.run(recorder.flush)
    # The last flush, once the server has stopped serving: nothing to leave the interpreter to.
    recorder.record("key_1", 1_777_000_001.0, "agent/1.0", "10.0.0.1")
    anyio.run(functools.partial(recorder.flush, final=True))

    assert seen == [(pytest.approx(1 / FLUSH_SHARE - 1), False), (0, False)]
