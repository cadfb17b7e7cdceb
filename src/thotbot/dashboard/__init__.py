"""The dashboard: server-rendered pages for people (sign-up, sign-in, API keys, security)."""

from __future__ import annotations

from typing import Any

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from thotbot.services import Services

__all__ = ["exception_handlers", "middleware", "routes"]


def routes(services: Services) -> list[BaseRoute]:
    async def home(request: Request) -> Response:
        return HTMLResponse(
            "<!doctype html><title>Thotbot</title><h1>Thotbot</h1>"
            "<p>The API is at <code>/v1</code>; its description at "
            '<a href="/openapi/api.yaml">/openapi/api.yaml</a>.</p>'
        )

    return [Route("/", home, methods=["GET"])]


def middleware(services: Services) -> list[Middleware]:
    return []


def exception_handlers() -> dict[Any, Any]:
    return {}
