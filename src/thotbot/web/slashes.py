"""Trailing-slash redirects whose Location is a path on this site, never built from ``Host``.

Starlette's own redirect_slashes answers ``/dashboard/`` with ``Location: http://<Host>/dashboard``:
a forged ``Host`` header (through a cache or a proxy that forwards it) turns it into a redirect to
another site. Ours is a relative reference (RFC 9110 section 10.2.2), which the browser resolves
against the address it asked for, so the Host header has no say.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["install_slash_redirects"]


def install_slash_redirects(app: Starlette) -> None:
    """Replace ``app``'s trailing-slash redirect with ours; a path nothing matches stays a 404."""
    router = app.router
    router.redirect_slashes = False
    router.default = _SlashRedirect(router, router.default)


class _SlashRedirect:
    def __init__(self, router: Router, fallback: ASGIApp) -> None:
        self.router = router
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        location = _location(self.router, scope) if scope["type"] == "http" else None
        if location is None:
            await self.fallback(scope, receive, send)
            return
        await RedirectResponse(location)(scope, receive, send)


def _location(router: Router, scope: Scope) -> str | None:
    path: str = scope["path"]
    if path == "/":
        return None
    other = path.rstrip("/") if path.endswith("/") else path + "/"
    # "//host" and "/\host" would be read by browsers as another site (a network-path reference).
    if not other.startswith("/") or other.startswith(("//", "/\\")):
        return None
    candidate = {**scope, "path": other}
    if not any(route.matches(candidate)[0] is not Match.NONE for route in router.routes):
        return None
    query: bytes = scope.get("query_string", b"")
    return other + ("?" + query.decode("latin-1") if query else "")
