"""The "Recent requests" and "Errors in the last 24 hours" sections of a key's page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from thotbot.core.dates import utcnow
from thotbot.dashboard.views.key_usage import redact
from thotbot.dashboard.web import Visit, run
from thotbot.storage import KeyRecord
from thotbot.storage.request_log import KEEP_PER_KEY, ErrorGroup, RequestEntry

__all__ = ["ERROR_HOURS", "SHOWN", "KeyRequestsPanel", "key_requests"]

#: Recent requests shown at first; "Show all" shows every one kept (KEEP_PER_KEY).
SHOWN = 50
ERROR_HOURS = 24


@dataclass(frozen=True, slots=True)
class KeyRequestsPanel:
    #: Newest first.
    requests: tuple[RequestEntry, ...]
    errors: tuple[ErrorGroup, ...]
    #: Whether there are more than shown (only asked when not showing all).
    more: bool
    showing_all: bool
    kept: int = KEEP_PER_KEY
    error_hours: int = ERROR_HOURS


async def key_requests(visit: Visit, record: KeyRecord, *, show_all: bool) -> KeyRequestsPanel:
    store = visit.services.request_log
    key_id = record.id
    since = utcnow() - timedelta(hours=ERROR_HOURS)
    wanted = KEEP_PER_KEY if show_all else SHOWN + 1
    entries = await run(lambda: store.recent(key_id, wanted))
    errors = await run(lambda: store.errors(key_id, since))
    shown = entries if show_all else entries[:SHOWN]
    return KeyRequestsPanel(
        # Stored paths and User-Agents are redacted already; a row from before that was so is too.
        requests=tuple(_redacted(e) for e in shown),
        errors=tuple(errors),
        more=not show_all and len(entries) > SHOWN,
        showing_all=show_all,
    )


def _redacted(entry: RequestEntry) -> RequestEntry:
    path = redact(entry.path) or entry.path
    agent = redact(entry.user_agent)
    if path == entry.path and agent == entry.user_agent:
        return entry
    return RequestEntry(
        entry.key_id, entry.at, entry.method, path, entry.status, entry.code, agent, entry.duration_us
    )
