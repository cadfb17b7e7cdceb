"""Last-used data, kept in memory on the request path and written to the database in batches."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import anyio.to_thread

from thotbot.storage import KeyUsage

__all__ = ["LastUsedRecorder"]

log = logging.getLogger("thotbot.usage")


class LastUsedRecorder:
    """Remembers the newest use of each key; ``flush`` hands the batch to the store.

    Memory is bounded by the number of distinct valid keys seen between two flushes.
    """

    def __init__(self, write: Callable[[Mapping[str, KeyUsage]], None]) -> None:
        self._write = write
        self._pending: dict[str, tuple[float, str | None]] = {}

    def record(self, key_id: str, now: float, user_agent: str | None) -> None:
        self._pending[key_id] = (now, user_agent)

    def take(self) -> dict[str, KeyUsage]:
        pending, self._pending = self._pending, {}
        return {key_id: KeyUsage(datetime.fromtimestamp(ts, UTC), ua) for key_id, (ts, ua) in pending.items()}

    def restore(self, batch: Mapping[str, KeyUsage]) -> None:
        """Put back a batch whose write failed, keeping newer data recorded meanwhile."""
        for key_id, use in batch.items():
            self._pending.setdefault(key_id, (use.last_used_at.timestamp(), use.user_agent))

    async def flush(self) -> int:
        """Write what is pending in a worker thread; a failed batch is kept for the next try.

        ``take`` and ``restore`` run on the event loop, the only thread that records.
        """
        batch = self.take()
        if not batch:
            return 0
        try:
            await anyio.to_thread.run_sync(self._write, batch)
        except Exception:
            # The database may be down; never lose the batch, never fail a request over it.
            log.warning("could not write last-used data for %d keys; will retry", len(batch), exc_info=True)
            self.restore(batch)
            return 0
        return len(batch)
