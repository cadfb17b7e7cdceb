"""ThotbotError -> RFC 9457 application/problem+json, for the ASGI guard and for route handlers."""

from __future__ import annotations

import json
import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Send

from thotbot.errors import (
    AuthenticationError,
    InsufficientScope,
    NotFound,
    RateLimited,
    ThotbotError,
    ValidationFailed,
)
from thotbot.redaction import redact

__all__ = [
    "NO_STORE",
    "REALM",
    "http_exception_handler",
    "problem_parts",
    "problem_response",
    "send_problem",
    "server_error_handler",
    "thotbot_error_handler",
]

log = logging.getLogger("thotbot.api")
REALM = 'Bearer realm="thotbot"'
NO_STORE = (b"cache-control", b"no-store")
_PROBLEM_TYPE = b"application/problem+json"


class _MethodNotAllowed(ThotbotError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"
    default_detail = "This endpoint does not accept that HTTP method."


class _ContentTooLarge(ThotbotError):
    status = 413
    code = "content_too_large"
    title = "Content too large"
    default_detail = "The request body is larger than the 1 MiB this API accepts."


def problem_parts(exc: ThotbotError, instance: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    # The instance is the request path and a detail may quote the request (a key id from the
    # path): whatever a client sent, key material in it never comes back in a problem.
    body: dict[str, object] = {
        "type": exc.type_uri,
        "title": exc.title,
        "status": exc.status,
        "detail": redact(exc.detail),
        "code": exc.code,
        "instance": redact(instance),
    }
    body.update({k: redact(v) if isinstance(v, str) else v for k, v in exc.extra.items() if k not in body})
    headers = [(b"content-type", _PROBLEM_TYPE)]
    if isinstance(exc, AuthenticationError):
        challenge = f'{REALM}, error="{exc.bearer_error}", error_description="{exc.title}"'
        headers.append((b"www-authenticate", challenge.encode()))
    elif isinstance(exc, InsufficientScope):
        challenge = f'{REALM}, error="insufficient_scope", error_description="{exc.title}"'
        headers.append((b"www-authenticate", challenge.encode()))
    elif isinstance(exc, RateLimited):
        body["retry_after"] = exc.retry_after
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    headers.append((b"content-length", str(len(payload)).encode()))
    return exc.status, headers, payload


async def send_problem(send: Send, exc: ThotbotError, instance: str) -> None:
    status, headers, body = problem_parts(exc, instance)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def problem_response(exc: ThotbotError, instance: str) -> Response:
    status, headers, body = problem_parts(exc, instance)
    response = Response(body, status_code=status)
    response.raw_headers = headers
    return response


async def thotbot_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ThotbotError)
    if exc.status >= 500:
        log.error("%s on %s %s: %s", exc.code, request.method, request.url.path, exc.detail)
    return problem_response(exc, request.url.path)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: ThotbotError
    if exc.status_code == 404:
        error = NotFound()
    elif exc.status_code == 405:
        error = _MethodNotAllowed()
    elif exc.status_code == 413:
        # Starlette's body limit raises this while a handler reads a chunked body.
        error = _ContentTooLarge()
    elif exc.status_code in (400, 422):
        error = ValidationFailed(str(exc.detail))
    else:
        error = ThotbotError(str(exc.detail))
    return problem_response(error, request.url.path)


async def server_error_handler(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(ThotbotError(), request.url.path)
