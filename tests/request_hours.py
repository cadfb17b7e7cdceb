"""Rows of key_request_hours for tests, written as the request log's flush would (tests do not run
the recorder): straight into the table on SQL, into the memory store's list in memory."""

from __future__ import annotations

from datetime import datetime, timedelta

from thotbot.services import Services
from thotbot.storage.failing import HourRow
from thotbot.storage.memory import MemoryFailingStore
from thotbot.storage.models import KeyRequestHour

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
    if isinstance(services.failing, MemoryFailingStore):
        services.failing.hours.append(
            HourRow(key_id, hour, endpoint, code, requests, first, last, user_agent)
        )
        return
    with services.db.begin() as session:
        session.add(
            KeyRequestHour(
                key_id=key_id,
                hour=hour,
                endpoint=endpoint,
                code=code,
                requests=requests,
                first_seen=first,
                last_seen=last,
                user_agent=user_agent,
            )
        )
