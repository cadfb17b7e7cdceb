"""CORS on /v1: no origin is granted access, and a browser's preflight gets a deliberate answer.

An API key is a secret: code a browser runs shows it to whoever opens the page, so the API grants
no cross-origin access: call it from a server, as secret-key APIs ask of their secret keys.
A browser asks first with a preflight: ``OPTIONS``, ``Origin`` and
``Access-Control-Request-Method``, never an ``Authorization`` header nor a cookie. The guard would
answer it ``401 missing_api_key``, telling a developer to fix a key a preflight cannot carry, and
charge the failed-request limit of the address. Instead it gets ``204`` with no
``Access-Control-Allow-*`` header: the Fetch standard's way to say no, which the browser reports
as the usual CORS error, and the request itself is never sent. ``Vary`` names the headers the
answer was made from.

The guard calls this only where authentication failed for want of a key, so a request with a key
never pays for it (docs/API.md, Cross-origin requests).
"""

from __future__ import annotations

from starlette.types import Send

__all__ = ["is_preflight", "refuse_preflight"]

_VARY = (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers")


def is_preflight(method: str, headers: list[tuple[bytes, bytes]]) -> bool:
    """A CORS preflight: OPTIONS with both an Origin and an Access-Control-Request-Method header."""
    if method != "OPTIONS":
        return False
    names = {name for name, _ in headers}
    return b"origin" in names and b"access-control-request-method" in names


async def refuse_preflight(send: Send) -> None:
    """204, no Access-Control-Allow-* header: the browser does not send the request."""
    await send({"type": "http.response.start", "status": 204, "headers": [_VARY]})
    await send({"type": "http.response.body", "body": b""})
