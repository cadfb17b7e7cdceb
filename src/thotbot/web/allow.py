"""``Allow`` for a 405 (RFC 9110 15.5.6): every method the request's path accepts.

Starlette names only the methods of the first route matching the path; GET /login and POST /login,
or GET /v1/keys and POST /v1/keys, are two routes. The API's and the dashboard's 405 handlers both
answer with this.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Match, Route

__all__ = ["allowed_methods"]


def allowed_methods(request: Request, fallback: str | None = None) -> str | None:
    """The methods of every route of the app whose path matches this request's, joined as in
    ``Allow``; ``fallback`` (what Starlette said) when no route of the app's own list matches."""
    methods: set[str] = set()
    for route in getattr(request.app, "routes", ()):
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                methods |= route.methods
    return ", ".join(sorted(methods)) if methods else fallback
