"""Logging set-up: one record a line (or a first line and indented ones), as text or JSON.

Whatever a record holds, both formatters write it through ``logsafe``: key material in any
encoding is redacted and control characters are escaped, so neither a misplaced key nor a forged
line reaches the log through a message, its arguments or a traceback.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

from thotbot.core.logsafe import json_line, record_text
from thotbot.core.redaction import redact

__all__ = ["TEXT_FORMAT", "JSONFormatter", "TextFormatter", "configure_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        return record_text(super().format(record))


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json_line(entry)


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Our own access log redacts query strings; uvicorn's would print them whole.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
