"""/docs: the documentation pages, rendered once per process (thotbot.dashboard.docs)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from thotbot.core.errors import NotFound
from thotbot.dashboard.documentation import site
from thotbot.dashboard.web import run

__all__ = ["docs_index", "docs_page"]

#: The same for every visitor, and no secret: browsers and proxies may keep it a few minutes.
_CACHE = {"cache-control": "public, max-age=300"}


async def docs_index(request: Request) -> Response:
    return await _serve("")


async def docs_page(request: Request) -> Response:
    return await _serve(request.path_params["name"])


async def _serve(name: str) -> Response:
    # The first request of a process renders every page (a fraction of a second): off the event loop.
    found = (await run(site)).find(name)
    if found is None:
        raise NotFound("There is no documentation page at this address.")
    body, media_type = found
    return Response(body, media_type=media_type, headers=_CACHE)
