"""Rows of key_request_hours for tests, written through the request log's store as its flush
writes them (tests do not run the recorder), on every backend."""

from __future__ import annotations

from datetime import datetime, timedelta

from thotbot.services import Services
from thotbot.storage.request_log import HourCount, RequestLogBatch

__all__ = ["add_hour"]


def add_hour(
    services: Services,
    key_id: str,
    hour: datetime,
    requests: int,
    *,
    code: str = "",
    endpoint: str = "GET /v1/keys",
    user_agent: str | None = "acme-sync/2.3.1 (ops@acme.example)",
) -> None:
    """``requests`` requests of ``key_id`` in the hour starting at ``hour``, answered with ``code``."""
    first, last = hour + timedelta(minutes=1), hour + timedelta(minutes=59)
    row = HourCount(key_id, hour, endpoint, code, requests, first, last, user_agent)
    services.request_log.write(RequestLogBatch(hours=(row,)))
