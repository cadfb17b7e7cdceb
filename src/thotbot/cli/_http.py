"""uvicorn's httptools protocol, with bounded request heads, head and idle timeouts, bounded
connections, and RFC 9457 problems for what it refuses before the application sees a request."""

from __future__ import annotations

import asyncio
import itertools
import json
from asyncio import TimerHandle
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from thotbot.cli._limits import ConnectionLimits

__all__ = ["ProblemHttpToolsProtocol"]

# After a refusal the client may still be sending (the rest of a huge head): reading and dropping a
# little more of it, for a little while, lets it read the answer instead of a reset.
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 1024 * 1024

#: Connections of this worker in the order they were made: the older goes first among equals.
_numbers = itertools.count()


def _problem(status: str, code: str, title: str, detail: str, *extra: bytes) -> tuple[bytes, bytes]:
    """The status line with the headers after the default ones, and the body: built once, at import."""
    number = int(status.split(" ", 1)[0])
    body = json.dumps(
        {
            "type": "https://thotbot.cc/problems/" + code.replace("_", "-"),
            "title": title,
            "status": number,
            "detail": detail,
            "code": code,
        },
        separators=(",", ":"),
    ).encode()
    headers = b"".join(
        [
            b"content-type: application/problem+json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"cache-control: no-store\r\n",
            *extra,
            b"connection: close\r\n\r\n",
        ]
    )
    return b"HTTP/1.1 " + status.encode("ascii") + b"\r\n", headers + body


# None of these depends on the request, which may hold a key: nothing of it is echoed.
_BAD_REQUEST = _problem(
    "400 Bad Request",
    "bad_request",
    "Bad request",
    "The request is not valid HTTP/1.1: a header may hold a control character or a bare line "
    "break. Send the key as 'Authorization: Bearer thot_ak_...' and nothing else.",
)
_HEAD_TOO_LARGE = _problem(
    "431 Request Header Fields Too Large",
    "request_header_too_large",
    "Request header fields too large",
    "The request line and headers must fit in 64 KiB, and each line in 16 KiB. "
    "Send fewer or shorter headers (cookies included).",
)
_HEAD_TIMEOUT = _problem(
    "408 Request Timeout",
    "request_timeout",
    "Request timeout",
    "The request line and headers did not arrive in time. Send the whole request head at once.",
)
_TOO_MANY_CONNECTIONS = _problem(
    "503 Service Unavailable",
    "too_many_connections",
    "Too many connections",
    "The server has as many connections as it can hold, each with a request in flight. Retry soon.",
    b"retry-after: 1\r\n",
)


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ConnectionLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits or ConnectionLimits()
        self.timeout_keep_alive = self.limits.keep_alive_timeout
        #: True from the end of a request until its successor's head is complete.
        self._in_head = True
        #: Bytes of the unfinished head so far, and of its unfinished last line.
        self._head_size = 0
        self._line_size = 0
        #: Heads completed on this connection: tells whether one ended inside a read.
        self._heads = 0
        self._head_timer: TimerHandle | None = None
        self._made_at = 0.0
        self._number = 0
        self._lingering = False
        self._lingered = 0

    # Connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._made_at = self.loop.time()
        self._number = next(_numbers)
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _busy(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _waiting_since(self) -> float:
        """When it last began waiting for a request head, read off its timers: no cost per request."""
        if self._lingering:
            return 0.0  # refused already: first to go
        if self.timeout_keep_alive_task is not None:
            return self.timeout_keep_alive_task.when() - self.timeout_keep_alive
        if self._head_timer is not None:
            return self._head_timer.when() - self.limits.header_timeout
        return self._made_at

    def _make_room(self) -> None:
        # Close whoever waited longest without a request in flight: an idle keep-alive connection is
        # cheap for its client to reopen, and a half-sent head is what an attacker holds seats with.
        # A request in flight is never cut off; if every seat has one, the newcomer is refused.
        waiting = [
            # uvloop's clock ticks once per loop iteration: many connections share a time.
            (other._waiting_since(), other._number, other)
            for other in self.connections
            if isinstance(other, ProblemHttpToolsProtocol)
            and other is not self
            and not other._busy()
            and not other.transport.is_closing()
        ]
        if waiting:
            *_, victim = min(waiting, key=lambda entry: entry[:2])
            victim._expire()
        else:
            self.logger.warning("Connection limit (%d) reached, all busy.", self.limits.max_connections)
            self._refuse(_TOO_MANY_CONNECTIONS)

    # Reading the request head

    def data_received(self, data: bytes) -> None:
        if not self._in_head:  # a body, or a request in flight: nothing here is a head to bound
            _parent_data_received(self, data)
            return
        if self._lingering:
            self._lingered += len(data)
            if self._lingered > _LINGER_BYTES:
                self.transport.close()
            return
        # The head is measured before the parser sees it: httptools and uvicorn grow a header value
        # and the URL by concatenation, so an unbounded head costs the square of its size.
        room = self.limits.head_bytes - self._head_size
        part = data if len(data) <= room else data[:room]
        # Only a head longer than one line's limit can hold a line over it: small ones skip the scan.
        long = self._head_size + len(part) > self.limits.line_bytes
        if long and not self._lines_fit(part):
            self._head_too_large()
            return
        heads = self._heads
        _parent_data_received(self, part)
        if self._lingering or self.transport.is_closing():
            return  # refused as not HTTP, or closed
        if self._heads != heads:
            # The head ended inside this read; what follows is a body or the next request.
            if len(part) < len(data):
                self.data_received(data[len(part) :])
            return
        self._head_size += len(part)
        if len(part) < len(data):
            self._head_too_large()
            return
        if not long:
            end = part.rfind(b"\n")
            self._line_size = self._line_size + len(part) if end < 0 else len(part) - end - 1
        if self._head_timer is None and not self._busy():
            self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _lines_fit(self, part: bytes) -> bool:
        """Whether each line of the head, ``part`` the next bytes of it, is within the limit."""
        if self._line_size == 0 and part.startswith((b"\n", b"\r\n")):
            return True  # the blank line that ends the head; what follows is not head
        # Only the head's lines count: a body in the same read may hold long lines.
        ends = [i for i in (part.find(b"\n\r\n"), part.find(b"\n\n")) if i >= 0]
        lines = (part[: min(ends) + 1] if ends else part).split(b"\n")
        first = self._line_size + len(lines[0])
        if first > self.limits.line_bytes or max(map(len, lines)) > self.limits.line_bytes:
            return False
        self._line_size = first if len(lines) == 1 else len(lines[-1])
        return True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads += 1
        self._head_size = self._line_size = 0
        self._cancel_head_timer()
        _parent_on_headers_complete(self)

    def on_message_complete(self) -> None:
        self._in_head = True
        _parent_on_message_complete(self)

    # Refusing

    def send_400_response(self, msg: str) -> None:
        self._refuse(_BAD_REQUEST)

    def _head_too_large(self) -> None:
        limits = self.limits
        self.logger.warning(
            "Request head over %d bytes, or a line over %d, refused.", limits.head_bytes, limits.line_bytes
        )
        if self._busy():  # an answer now would land inside the response in flight
            self.transport.close()
        else:
            self._refuse(_HEAD_TOO_LARGE)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._busy():  # with a request in flight, the keep-alive timeout follows its response
            self._expire()

    def _expire(self) -> None:
        """Close a connection with no request in flight: with a 408 if it had begun a head."""
        if self._head_size and not self._lingering:
            self._refuse(_HEAD_TIMEOUT)
        else:
            self._cancel_head_timer()
            self.transport.close()

    def _refuse(self, problem: tuple[bytes, bytes]) -> None:
        status, rest = problem
        content = [status]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.append(rest)
        self.transport.write(b"".join(content))
        self._cancel_head_timer()
        self._unset_keepalive_if_required()
        self._in_head = self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(_LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


# Called on every request: the parent's methods, looked up once rather than through super() each time.
_parent_data_received = HttpToolsProtocol.data_received
_parent_on_headers_complete = HttpToolsProtocol.on_headers_complete
_parent_on_message_complete = HttpToolsProtocol.on_message_complete
