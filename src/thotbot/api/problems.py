"""Starlette's side of problem+json: the exception handlers and a Response for route handlers."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from thotbot.core.errors import (
    ContentTooLarge,
    MethodNotAllowed,
    NotFound,
    ThotbotError,
    ValidationFailed,
)
from thotbot.core.problems import problem_parts
from thotbot.web.allow import allowed_methods

__all__ = [
    "http_exception_handler",
    "problem_response",
    "server_error_handler",
    "thotbot_error_handler",
]

log = logging.getLogger("thotbot.api")


def problem_response(exc: ThotbotError, instance: str) -> Response:
    status, headers, body = problem_parts(exc, instance)
    response = Response(body, status_code=status)
    response.raw_headers = headers
    return response


def _note_code(request: Request, code: str) -> None:
    """Leave the problem's code where the guard finds it for the key's request log."""
    state = request.scope.get("state")
    if state is not None:
        state["problem_code"] = code


async def thotbot_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ThotbotError)
    _note_code(request, exc.code)
    if exc.status >= 500:
        log.error("%s on %s %s: %s", exc.code, request.method, request.url.path, exc.detail)
    return problem_response(exc, request.url.path)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: ThotbotError
    if exc.status_code == 404:
        error = NotFound()
    elif exc.status_code == 405:
        error = MethodNotAllowed()
    elif exc.status_code == 413:
        # Starlette's body limit raises this while a handler reads a chunked body.
        error = ContentTooLarge()
    elif exc.status_code in (400, 422):
        error = ValidationFailed(str(exc.detail))
    else:
        error = ThotbotError(str(exc.detail))
    _note_code(request, error.code)
    response = problem_response(error, request.url.path)
    if exc.status_code == 405:
        # RFC 9110 15.5.6: every method the path accepts. Starlette names only those of the first
        # route matching the path, and GET /v1/keys and POST /v1/keys are two routes.
        allowed = allowed_methods(request, (exc.headers or {}).get("Allow"))
        if allowed:
            response.headers["Allow"] = allowed
    return response


async def server_error_handler(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    _note_code(request, ThotbotError.code)
    return problem_response(ThotbotError(), request.url.path)
