"""The ASGI step behind trusted reverse proxies: the application sees the client they name.

Which peers are trusted and how X-Forwarded-For / Forwarded are read is ``thotbot.core.proxies``
(pure, shared with the settings); this module applies it to a request's scope.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from thotbot.core.proxies import TrustedProxies, parse_forwarded, parse_x_forwarded_for

__all__ = ["ForwardedClientMiddleware", "forwarded_scope"]


class ForwardedClientMiddleware:
    """Pure ASGI: the application behind it sees the client a trusted proxy names."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(forwarded_scope(scope, self.trusted), receive, send)


def forwarded_scope(scope: Scope, trusted: TrustedProxies) -> Scope:
    """The scope as the application should see it: a copy with the client (and scheme) a trusted
    proxy named, else the scope itself. Malformed headers are ignored: the peer stays the client."""
    if scope["type"] not in ("http", "websocket"):
        return scope
    peer = scope.get("client")
    if not peer or not trusted.trusts(peer[0]):
        return scope
    x_forwarded_for: list[bytes] = []
    forwarded: list[bytes] = []
    proto: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            x_forwarded_for.append(value)
        elif name == b"forwarded":
            forwarded.append(value)
        elif name == b"x-forwarded-proto":
            proto = value
    # X-Forwarded-For first: it is what nginx, HAProxy and the cloud balancers set, and they pass
    # a client's own Forwarded header through untouched.
    if x_forwarded_for:
        hops = parse_x_forwarded_for(b",".join(x_forwarded_for))
    else:
        hops = parse_forwarded(b",".join(forwarded)) if forwarded else []
    scope = dict(scope)
    client = trusted.client(peer[0], hops)
    if client is not None:
        # The proxy does not say which port the client used.
        scope["client"] = (str(client), 0)
    scheme = _scheme(proto, scope["type"]) if proto is not None else None
    if scheme is not None:
        scope["scheme"] = scheme
    return scope


def _scheme(proto: bytes, kind: str) -> str | None:
    # The right-most value is the one our proxy wrote; anything but http or https is ignored.
    value = proto.rsplit(b",", 1)[-1].strip().lower()
    if value == b"https":
        return "https" if kind == "http" else "wss"
    if value == b"http":
        return "http" if kind == "http" else "ws"
    return None
