"""The access log, off the request path: a request appends a tuple, a background task writes lines.

Python's logging costs tens of microseconds a record (the caller lookup, the record, the handler
lock, a flush each time): more than the rest of an authenticated request. So the guard records a
tuple and the app's background task formats the batch and writes it with one call, every half
second and at shutdown. `thotbot serve` writes straight to stderr (``write=write_stderr``); an
AccessLog without ``write`` hands each line to the ``thotbot.access`` logger instead, for embedding
and tests. Lines keep the format of the other logs (THOTBOT_LOG_FORMAT) and the
logger name ``thotbot.access``. A query string is never recorded: it is where a misplaced key
would be. Every client-controlled field is redacted (``redaction.redact``: key material in any
encoding) and, in the text format, escaped (``logsafe.field``), so one request is one line; that
work happens here, in the batch, not on the request path.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from thotbot.core.logsafe import field, json_line, json_string
from thotbot.core.redaction import redact

__all__ = ["AccessLog", "write_stderr"]

LOGGER = "thotbot.access"
#: Lines formatted between two turns of the event loop: about a millisecond's work.
CHUNK = 500
_Entry = tuple[float, str, str, str, int, str, float]
#: Milliseconds as a text line shows them, "000" to "999".
_MILLIS = tuple(f"{n:03d}" for n in range(1000))


class AccessLog:
    def __init__(
        self,
        log_format: str = "text",
        *,
        max_pending: int = 50_000,
        write: Callable[[str], object] | None = None,
    ) -> None:
        self._json = log_format == "json"
        self._max = max_pending
        self._write = write
        self._pending: list[_Entry] = []
        self.dropped = 0
        self._logger = logging.getLogger(LOGGER)

    @property
    def enabled(self) -> bool:
        return self._logger.isEnabledFor(logging.INFO)

    def record(self, address: str, method: str, path: str, status: int, key_id: str, duration: float) -> None:
        if len(self._pending) < self._max:
            self._pending.append((time.time(), address, method, path, status, key_id, duration))
        else:
            self.dropped += 1  # Never block or grow without end; say so at the next flush.

    def flush(self) -> int:
        """Write every pending line now, in one call (at shutdown, and embedded)."""
        entries, self._pending = self._pending, []
        dropped, self.dropped = self.dropped, 0
        if not (entries or dropped) or not self.enabled:
            return 0
        if self._write is None:
            # Embedded (tests, another server's logging): one record a line, through logging.
            for entry in entries:
                self._logger.info(_message(entry))
            if dropped:
                self._logger.warning("%d access log lines dropped", dropped)
            return len(entries)
        text = self._format(entries)
        if dropped:
            text += self._line(time.time(), "WARNING", f"{dropped} access log lines dropped")
        self._write(text)
        return len(entries)

    async def drain(self, chunk: int = CHUNK) -> int:
        """``flush``, a chunk of lines at a time, letting requests run between chunks.

        The server's background task calls this: at ten thousand requests a second, half a second
        of lines formatted in one go held the event loop for tens of milliseconds, and every
        request that arrived meanwhile waited that long (the p99 of docs/PERFORMANCE.md).
        """
        if self._write is None or len(self._pending) <= chunk:
            return self.flush()
        entries, self._pending = self._pending, []
        if not self.enabled:
            return 0
        for start in range(0, len(entries), chunk):
            self._write(self._format(entries[start : start + chunk]))
            await asyncio.sleep(0)
        return len(entries) + self.flush()

    def _format(self, entries: list[_Entry]) -> str:
        """The lines of ``entries``, formatted in one pass.

        Clients repeat themselves (one address, a few paths), so each line's request part (client,
        method and path, redacted and escaped) is made once per batch, as is each second's time
        stamp and, in JSON, each key's name; a line then adds its status, key, fraction of a
        second and duration.
        """
        return (self._format_json if self._json else self._format_text)(entries)

    @staticmethod
    def _format_text(entries: list[_Entry]) -> str:
        heads: dict[tuple[str, str, str], str] = {}
        stamps: dict[int, str] = {}
        lines: list[str] = []
        add = lines.append
        for at, address, method, path, status, key_id, duration in entries:
            request = (address, method, path)
            head = heads.get(request)
            if head is None:
                head = heads[request] = f'{field(address)} "{field(method)} {field(path)}" '
            second = int(at)
            stamp = stamps.get(second)
            if stamp is None:
                stamp = stamps[second] = _stamp(second, False)
            add(
                f"{stamp},{_MILLIS[int((at - second) * 1000)]} INFO {LOGGER}: "
                f"{head}{status} {key_id} {duration * 1000:.1f}ms\n"
            )
        return "".join(lines)

    @staticmethod
    def _format_json(entries: list[_Entry]) -> str:
        # json.dumps of the record, spelled out: what repeats is encoded once a batch.
        heads: dict[tuple[str, str, str], tuple[str, str]] = {}
        names: dict[str, tuple[str, str]] = {}
        encoded: dict[str, str] = {}
        stamps: dict[int, str] = {}
        lines: list[str] = []
        add = lines.append
        for at, address, method, path, status, key_id, duration in entries:
            request = (address, method, path)
            head = heads.get(request)
            if head is None:
                head = heads[request] = (
                    # The message's JSON string, open: status, key and duration end it.
                    json_string(f'{field(address)} "{field(method)} {field(path)}" ')[:-1],
                    f'"client": {_encoded(encoded, address)}, "method": {_encoded(encoded, method)}, '
                    f'"path": {_encoded(encoded, path)}, ',
                )
            name = names.get(key_id)
            if name is None:
                # The key as the message spells it (inside its string), and as the key_id field.
                name = names[key_id] = (
                    json_string(key_id)[1:-1],
                    "null" if key_id == "-" else _encoded(encoded, key_id),
                )
            second = int(at)
            stamp = stamps.get(second)
            if stamp is None:
                stamp = stamps[second] = _stamp(second, True)
            ms = duration * 1000
            add(
                f'{{"time": "{stamp}.{int((at - second) * 1_000_000):06d}+00:00", "level": "info", '
                f'"logger": "{LOGGER}", "message": {head[0]}{status} {name[0]} {ms:.1f}ms", '
                f'{head[1]}"status": {status}, "key_id": {name[1]}, "duration_ms": {round(ms, 1)!r}}}\n'
            )
        return "".join(lines)

    def _line(self, at: float, level: str, message: str) -> str:
        if self._json:
            entry = {"time": _iso(at), "level": level.lower(), "logger": LOGGER, "message": message}
            return json_line(entry) + "\n"
        return f"{_asctime(at)} {level} {LOGGER}: {message}\n"


def _message(entry: _Entry) -> str:
    _, address, method, path, status, key_id, duration = entry
    return f'{field(address)} "{field(method)} {field(path)}" {status} {key_id} {duration * 1000:.1f}ms'


def write_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def _encoded(seen: dict[str, str], text: str) -> str:
    """``text`` redacted and as a JSON string, remembered for the rest of the batch."""
    found = seen.get(text)
    if found is None:
        found = seen[text] = json_string(redact(text))
    return found


def _stamp(second: int, json_format: bool) -> str:
    """A second's time stamp, up to its fraction: as ``_iso`` in JSON, as ``_asctime`` in text."""
    if json_format:
        return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))


def _asctime(at: float) -> str:
    # The same shape as logging's default asctime: "2026-11-29 19:08:45,832".
    return f"{_stamp(int(at), False)},{int(at % 1 * 1000):03d}"


def _iso(at: float) -> str:
    return f"{_stamp(int(at), True)}.{int(at % 1 * 1_000_000):06d}+00:00"
