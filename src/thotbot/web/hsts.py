"""StrictTransportSecurity: on an https deployment, every response tells browsers: https only."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HSTS_VALUE", "StrictTransportSecurity"]

#: Two years, subdomains included: the value hstspreload.org asks for, short of "preload", which
#: is the operator's decision to make for their whole domain.
HSTS_VALUE = "max-age=63072000; includeSubDomains"
_HEADER = (b"strict-transport-security", HSTS_VALUE.encode())


class StrictTransportSecurity:
    """Adds the header to every HTTP response: the API's, the pages', the errors' alike."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), _HEADER]
            await send(message)

        await self.app(scope, receive, send_with_hsts)
