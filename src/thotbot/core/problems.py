"""ThotbotError -> RFC 9457 application/problem+json: the status, headers and body, pure.

The ASGI guard sends these parts itself (``send_problem``); route handlers wrap them in a Starlette
response (``thotbot.api.problems``); the HTTP server's own refusals (431, 408) use them too.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from thotbot.core.errors import APIKeyInURL, AuthenticationError, InsufficientScope, RateLimited, ThotbotError
from thotbot.core.redaction import redact

__all__ = ["NO_STORE", "PROBLEM_TYPE", "REALM", "problem_parts", "send_problem"]

#: An ASGI ``send`` callable (as ``starlette.types.Send``, without importing the framework).
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

REALM = 'Bearer realm="thotbot"'
NO_STORE = (b"cache-control", b"no-store")
PROBLEM_TYPE = b"application/problem+json"


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
    headers = [(b"content-type", PROBLEM_TYPE)]
    if isinstance(exc, AuthenticationError):
        # RFC 6750 3.1: no credentials, no error information; a refused key or a malformed request, both.
        challenge = REALM
        if exc.bearer_error is not None:
            challenge += f', error="{exc.bearer_error}", error_description="{exc.title}"'
        headers.append((b"www-authenticate", challenge.encode()))
    elif isinstance(exc, APIKeyInURL):
        challenge = f'{REALM}, error="invalid_request", error_description="{exc.title}"'
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
