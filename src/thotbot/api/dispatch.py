"""The API's read endpoints without Starlette's per-request layers: one dict lookup to the handler.

``ExactRoutes`` wraps the /v1 Starlette app. A GET or HEAD to a path that one of its routes
declares exactly (no ``{parameter}``) goes straight to that route's handler, with the same Request,
the same exception handlers and the same Response as through Starlette. Everything else (writes,
paths with parameters, unknown paths, methods a path does not take) goes through the Starlette app
unchanged, so its routing answers 404 and 405 as before.

Why: Starlette answers a request through its error middleware, its exception middleware, a router
that tries each route's regular expression in turn and a second exception wrapper around the
handler. That is most of what a bare Starlette app spends per request. Reads are most of the API's
traffic, and the guard in front of them is the product, so the layers they can do without are
skipped (docs/PERFORMANCE.md has the measurements).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from thotbot.api.problems import http_exception_handler, server_error_handler, thotbot_error_handler
from thotbot.core.errors import ThotbotError

__all__ = ["ExactRoutes"]

Endpoint = Callable[[Request], Awaitable[Response]]
_FAST_METHODS = frozenset({"GET", "HEAD"})


class ExactRoutes:
    def __init__(self, app: Starlette) -> None:
        self.app = app
        #: path -> {method: handler}, for the GET (and so HEAD) routes without path parameters.
        self.exact: dict[str, dict[str, Endpoint]] = {}
        for route in app.routes:
            if not isinstance(route, Route) or route.param_convertors or not route.methods:
                continue
            if inspect.iscoroutinefunction(route.endpoint):
                for method in route.methods & _FAST_METHODS:
                    self.exact.setdefault(route.path, {})[method] = route.endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handlers = self.exact.get(scope["path"])
        endpoint = handlers.get(scope["method"]) if handlers is not None else None
        if endpoint is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # What Starlette.__call__ and Route.handle would have put in the scope.
        scope["app"] = self.app
        scope["path_params"] = {}
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except ThotbotError as exc:
            response = await thotbot_error_handler(request, exc)
        except HTTPException as exc:
            response = await http_exception_handler(request, exc)
        except Exception as exc:
            response = await server_error_handler(request, exc)
        await response(scope, receive, send)
