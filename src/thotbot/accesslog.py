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

import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from thotbot.core.logsafe import field, json_line
from thotbot.core.redaction import redact

__all__ = ["AccessLog", "write_stderr"]

LOGGER = "thotbot.access"
_Entry = tuple[float, str, str, str, int, str, float]


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
        lines = [self._format(entry) for entry in entries]
        if dropped:
            lines.append(self._line(time.time(), "WARNING", f"{dropped} access log lines dropped", {}))
        self._write("".join(lines))
        return len(entries)

    def _format(self, entry: _Entry) -> str:
        at, address, method, path, status, key_id, duration = entry
        if not self._json:
            return self._line(at, "INFO", _message(entry), {})
        fields = {
            "client": redact(address),
            "method": redact(method),
            "path": redact(path),
            "status": status,
            "key_id": None if key_id == "-" else key_id,
            "duration_ms": round(duration * 1000, 1),
        }
        return self._line(at, "INFO", _message(entry), fields)

    def _line(self, at: float, level: str, message: str, fields: dict[str, object]) -> str:
        if self._json:
            entry = {
                "time": _iso(at),
                "level": level.lower(),
                "logger": LOGGER,
                "message": message,
                **fields,
            }
            return json_line(entry) + "\n"
        return f"{_asctime(at)} {level} {LOGGER}: {message}\n"


def _message(entry: _Entry) -> str:
    _, address, method, path, status, key_id, duration = entry
    return f'{field(address)} "{field(method)} {field(path)}" {status} {key_id} {duration * 1000:.1f}ms'


def write_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def _asctime(at: float) -> str:
    # The same shape as logging's default asctime: "2026-11-29 19:08:45,832".
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) + f",{int(at % 1 * 1000):03d}"


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()
