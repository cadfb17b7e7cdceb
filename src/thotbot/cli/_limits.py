"""How much of a worker one client may hold: the request head, the time to send it, connections."""

from __future__ import annotations

import resource
from dataclasses import dataclass

__all__ = ["HEAD_BYTES", "LINE_BYTES", "ConnectionLimits", "default_max_connections"]

#: A request head (request line and headers) longer than this is refused with 431.
HEAD_BYTES = 64 * 1024
#: One line of it (the request line, or one header) longer than this is refused with 431.
LINE_BYTES = 16 * 1024

# File descriptors a worker needs besides its clients: the database and Redis pools, log files,
# SQLite's journal, the event loop, the listening socket, the thread pool's work. Generous, because
# running out makes accept() fail and every new client wait, which is what the bound is there to stop;
# worse, libuv then accepts and at once closes a waiting connection (its EMFILE trick), so a client
# is reset. 64 proved too few under load: SQLite alone holds two or three per pooled connection.
_RESERVED_FDS = 128
_MAX_CONNECTIONS = 10_000


@dataclass(frozen=True)
class ConnectionLimits:
    """What `thotbot serve` gives each connection; the defaults are the documented ones."""

    #: Seconds to send a complete request head, counted from the connection or from its first byte.
    header_timeout: int = 10
    #: Seconds an idle connection is kept open after a response.
    keep_alive_timeout: int = 5
    #: Open connections per worker; when full, the one idle or half-sent the longest is closed.
    max_connections: int = _MAX_CONNECTIONS
    head_bytes: int = HEAD_BYTES
    line_bytes: int = LINE_BYTES


def default_max_connections(soft_limit: int | None = None) -> int:
    """Connections per worker that leave room under RLIMIT_NOFILE for everything else it opens."""
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit == resource.RLIM_INFINITY or soft_limit < 0:
        return _MAX_CONNECTIONS
    reserved = max(_RESERVED_FDS, soft_limit // 4)
    return max(16, min(_MAX_CONNECTIONS, soft_limit - reserved))
