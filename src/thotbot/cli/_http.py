"""uvicorn's httptools protocol, answering a request it cannot parse with an RFC 9457 problem."""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["PROTOCOL", "ProblemHttpToolsProtocol"]

#: For ``uvicorn.run(http=...)``: an import string, so each worker process imports it too.
PROTOCOL = "thotbot.cli._http:ProblemHttpToolsProtocol"

# Built once: it never depends on the request, which may hold a key (nothing of it is echoed).
_BODY = json.dumps(
    {
        "type": "https://thotbot.cc/problems/bad-request",
        "title": "Bad request",
        "status": 400,
        "detail": (
            "The request is not valid HTTP/1.1: a header may hold a control character or a bare line "
            "break. Send the key as 'Authorization: Bearer thot_ak_...' and nothing else."
        ),
        "code": "bad_request",
    },
    separators=(",", ":"),
).encode()


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        content = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/problem+json\r\n",
                b"content-length: " + str(len(_BODY)).encode("ascii") + b"\r\n",
                b"cache-control: no-store\r\n",
                b"connection: close\r\n",
                b"\r\n",
                _BODY,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
