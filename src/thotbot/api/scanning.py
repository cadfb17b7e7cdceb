"""``POST /v1/secret-scanning/report``: GitHub secret scanning reports keys it found in public.

Served only when ``THOTBOT_SECRET_SCANNING_KEYS`` names GitHub's public keys; otherwise the path
does not exist (404, like any unknown path). No API key: the guard lets it through under the
anonymous rate limit, and the signature over the raw body is the only proof that GitHub sent it.
Nothing is parsed, looked up, changed, mailed or logged before that signature checks out.
"""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from thotbot.config import Settings
from thotbot.core.errors import InvalidSignature
from thotbot.core.identity import Actor
from thotbot.core.scanning import IDENTIFIER_HEADER, SIGNATURE_HEADER, parse_reports
from thotbot.services import Services
from thotbot.web.guard import SECRET_SCANNING

__all__ = ["scanning_routes"]


async def secret_scanning_report(request: Request) -> Response:
    services: Services = request.app.state.services
    github_keys = services.settings.secret_scanning_keys
    if github_keys is None:  # pragma: no cover - the route exists only with the setting
        raise InvalidSignature
    # The body limit (app._BodyLimit) answers 413 past 1 MiB while this reads.
    body = await request.body()
    if not github_keys.verify(
        request.headers.get(IDENTIFIER_HEADER), request.headers.get(SIGNATURE_HEADER), body
    ):
        raise InvalidSignature
    leaks = parse_reports(body)  # 422 validation_error for anything but GitHub's array
    actor = Actor(
        "secret-scanning",
        request.client.host if request.client else None,
        request.headers.get("user-agent"),
    )
    known = await anyio.to_thread.run_sync(lambda: services.key_lifecycle.revoke_reported(leaks, actor))
    # GitHub's feedback format, as the partner program documents it: the token as GitHub sent it
    # (token_raw), to the sender whose signature was just checked; a real key among them is
    # revoked before this answer leaves.
    return JSONResponse(
        [
            {
                "token_raw": leak.token,
                "token_type": leak.type,
                "label": "true_positive" if real else "false_positive",
            }
            for leak, real in zip(leaks, known, strict=True)
        ]
    )


def scanning_routes(settings: Settings) -> list[Route]:
    """The report route when GitHub's keys are configured; none otherwise."""
    if settings.secret_scanning_keys is None:
        return []
    method, path = SECRET_SCANNING
    return [Route(path, secret_scanning_report, methods=[method])]
