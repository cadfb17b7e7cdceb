"""A scripted HTTP server on a free loopback port: answers what the test tells it to, records what it got.

For what a real Thotbot server cannot be made to answer on demand (a 503 with Retry-After, a
Retry-After of two minutes, an error code from a newer server), so that the client's handling of it
is checked over real HTTP.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Answer", "FakeAPI", "Seen", "fake_api", "ok", "problem"]


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeAPI:
    url: str
    #: What to answer, in order; once they are used up, every request gets the last one again.
    answers: list[Answer] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    def script(self, *answers: Answer) -> None:
        self.answers[:] = answers
        self.seen.clear()


def problem(status: int, code: str, detail: str = "scripted", **headers: str) -> Answer:
    body = {"type": "about:blank", "title": code, "status": status, "detail": detail, "code": code}
    return Answer(status, json.dumps(body).encode(), {"Content-Type": "application/problem+json", **headers})


def ok(body: object) -> Answer:
    return Answer(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


@contextmanager
def fake_api() -> Iterator[FakeAPI]:
    lock = threading.Lock()
    api = FakeAPI(url="")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                api.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
                answer = api.answers.pop(0) if len(api.answers) > 1 else api.answers[0]
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815 - http.server's names

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    server.daemon_threads = True  # a kept-alive connection does not hold up the end of the test
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
