"""Errors as HTML pages for people: the same ThotbotError family the API renders as JSON."""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from thotbot.core.errors import MethodNotAllowed, NotFound, ThotbotError, ValidationFailed
from thotbot.core.problems import NO_STORE as NO_STORE_HEADER
from thotbot.core.problems import problem_parts
from thotbot.dashboard.sudo import SudoRequired, sudo_required
from thotbot.dashboard.templating import templates
from thotbot.dashboard.web import NO_STORE, SignInRequired, login_url, redirect
from thotbot.web.allow import allowed_methods

__all__ = ["exception_handlers"]

log = logging.getLogger("thotbot.dashboard")

_HTTP_TITLES = {
    400: ("Bad request", "The request could not be understood. Go back and try again."),
    404: (NotFound.title, NotFound.default_detail),
    413: ("Too large", "What was sent is too large."),
}


def _page(request: Request, status: int, title: str, detail: str) -> Response:
    context = {"status": status, "title": title, "detail": detail}
    return templates.TemplateResponse(request, "error.html", context, status_code=status, headers=NO_STORE)


async def thotbot_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ThotbotError)
    if exc.status >= 500:
        log.error("%s on %s %s: %s", exc.code, request.method, request.url.path, exc.detail)
    return _page(request, exc.status, exc.title, exc.detail)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return _method_not_allowed(request, exc)
    title, detail = _HTTP_TITLES.get(exc.status_code, ("Error", str(exc.detail)))
    if exc.status_code in (400, 422):
        title, detail = ValidationFailed.title, "The form could not be read. Go back and try again."
    return _page(request, exc.status_code, title, detail)


def _method_not_allowed(request: Request, exc: HTTPException) -> Response:
    """A 405 is a program's mistake, not a person's: problem+json with ``Allow`` (RFC 9110), as on /v1."""
    status, headers, body = problem_parts(MethodNotAllowed(), request.url.path)
    response = Response(body, status_code=status)
    response.raw_headers = [*headers, NO_STORE_HEADER]
    # Every method the path takes: GET /login and POST /login are two routes.
    allowed = allowed_methods(request, (exc.headers or {}).get("Allow"))
    if allowed:
        response.headers["Allow"] = allowed
    return response


async def sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    return redirect(None, login_url(exc.next_path))


async def server_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    error = ThotbotError()
    return _page(request, 500, error.title, error.default_detail)


def exception_handlers() -> dict[Any, Any]:
    return {
        SignInRequired: sign_in_required,
        SudoRequired: sudo_required,
        ThotbotError: thotbot_error,
        HTTPException: http_error,
        Exception: server_error,
    }
