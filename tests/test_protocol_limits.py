"""End to end: a real `thotbot serve` bounds request heads, the time to send them, and connections."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live import LiveServer, start_server

HEADER_TIMEOUT = 2
KEEPALIVE_TIMEOUT = 1
#: Far longer than any timeout under test: proves "closed", not "closed fast".
PATIENCE = 20


def _settings(tmp: Path, **extra: str) -> dict[str, str]:
    return {
        "THOTBOT_DATABASE_URL": f"sqlite:///{tmp / 'thotbot.db'}",
        "THOTBOT_ANON_RATE_LIMIT": "100000/minute",
        "THOTBOT_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "THOTBOT_KEEPALIVE_TIMEOUT": str(KEEPALIVE_TIMEOUT),
        **extra,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("protocol")
    live = start_server(tmp, _settings(tmp))
    try:
        yield live
    finally:
        live.stop()
    assert "Traceback" not in live.log_text()


def _connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (or resets after its answer)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def _problem(answer: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def _healthy(server: LiveServer) -> bool:
    return httpx.get(server.url + "/healthz", timeout=10).status_code == 200


def _head(path: str, *headers: bytes) -> bytes:
    return b"".join([f"GET {path} HTTP/1.1\r\nHost: localhost\r\n".encode(), *headers, b"\r\n"])


# Request heads


def test_a_60_mb_header_is_refused_after_about_the_limit_while_others_are_served(
    server: LiveServer,
) -> None:
    chunk, total, sent = b"a" * 16384, 60 * 1024 * 1024, 0
    answer = b""
    with _connect(server) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sock.sendall(b"GET /v1/me HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + chunk)
        assert _healthy(server)  # a half-sent huge header stalls no one
        deadline = time.monotonic() + 60
        try:
            while sent < total and time.monotonic() < deadline:
                readable, writable, _ = select.select([sock], [sock], [], PATIENCE)
                if readable:
                    answer = _read_all(sock)
                    break
                if writable:
                    sent += sock.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while still sending: a reset is a fine answer too

        assert _healthy(server)

    # The server stopped reading after about its 64 KiB: what was sent fits in the sockets' buffers.
    assert sent < 16 * 1024 * 1024
    if answer:
        status, headers, problem = _problem(answer)
        assert (status, problem["code"]) == (431, "request_header_too_large")
        assert headers["connection"] == "close"


def test_a_head_just_under_the_limits_is_served(server: LiveServer) -> None:
    # Four 15 kB headers: each line under 16 KiB, the whole head under 64 KiB.
    headers = [f"X-Big-{i}: ".encode() + b"b" * 15000 + b"\r\n" for i in range(4)]
    request = _head("/healthz", b"Connection: close\r\n", *headers)
    assert 60_000 < len(request) < 64 * 1024

    with _connect(server) as sock:
        sock.sendall(request)
        answer = _read_all(sock)

    assert answer.startswith(b"HTTP/1.1 200 ")


OVERSIZED = [
    pytest.param([b"X-Pad: " + b"c" * 20_000 + b"\r\n"], id="one-20kB-line"),
    pytest.param([f"X-Pad-{i}: ".encode() + b"d" * 9000 + b"\r\n" for i in range(8)], id="eight-9kB-lines"),
    pytest.param([b"Cookie: " + b"e" * 100_000 + b"\r\n"], id="one-100kB-line"),
]


@pytest.mark.parametrize("path", ["/v1/me", "/dashboard/api-keys", "/no/such/page"])
@pytest.mark.parametrize("headers", OVERSIZED)
def test_an_oversized_head_gets_a_431_problem_on_every_path(
    server: LiveServer, path: str, headers: list[bytes]
) -> None:
    with _connect(server) as sock:
        sock.sendall(_head(path, *headers))
        answer = _read_all(sock)

    status, got, problem = _problem(answer)
    assert status == 431
    assert got["content-type"] == "application/problem+json"
    assert got["cache-control"] == "no-store"
    assert got["connection"] == "close"
    assert problem["code"] == "request_header_too_large"
    assert problem["status"] == 431
    assert set(problem) >= {"type", "title", "detail"}
    assert headers[0][10:40] not in answer  # nothing of the request is echoed
    assert _healthy(server)


def test_a_long_url_is_a_long_line_too(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(_head("/healthz?q=" + "f" * 20_000))
        status, _, problem = _problem(_read_all(sock))

    assert (status, problem["code"]) == (431, "request_header_too_large")


def test_a_long_line_split_over_many_reads_trips_the_limit(server: LiveServer) -> None:
    answer = b""
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: ")
        try:
            for _ in range(64):  # 64 kB in 1 kB reads, far over one line's 16 KiB
                sock.sendall(b"g" * 1024)
                time.sleep(0.005)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_all(sock)

    status, _, problem = _problem(answer)
    assert (status, problem["code"]) == (431, "request_header_too_large")


def test_a_large_body_in_the_same_read_as_its_head_is_not_a_head(server: LiveServer) -> None:
    # 100 kB on one line, sent with its head at once: the limits are the head's, not the body's.
    body = json.dumps({"keys": ["x" * 999] * 100}).encode()
    assert len(body) > 64 * 1024
    request = (
        b"POST /v1/keys/revoke-leaked HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )

    with _connect(server) as sock:
        sock.sendall(request)
        answer = _read_all(sock)

    assert answer.startswith(b"HTTP/1.1 202 ")


def test_pipelined_requests_in_one_read_are_each_served(server: LiveServer) -> None:
    padded = _head("/healthz", b"X-Pad: " + b"h" * 15000 + b"\r\n")
    with _connect(server) as sock:
        sock.sendall(padded * 5 + _head("/healthz", b"Connection: close\r\n"))
        answer = _read_all(sock)

    assert answer.count(b"HTTP/1.1 200 ") == 6


# Timeouts


def test_a_half_sent_head_gets_a_408_after_the_header_timeout(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /v1/me HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bea")
        status, headers, problem = _problem(_read_all(sock))

    assert (status, problem["code"]) == (408, "request_timeout")
    assert headers["connection"] == "close"


def test_trickling_a_head_does_not_extend_the_header_timeout(server: LiveServer) -> None:
    answer = b""
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            if select.select([sock], [], [], 0.3)[0]:
                answer = _read_all(sock)
                break
            sock.sendall(b"X-Slow: 1\r\n")  # a header every 0.3 s, never the blank line

    status, _, problem = _problem(answer)
    assert (status, problem["code"]) == (408, "request_timeout")


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(server: LiveServer) -> None:
    with _connect(server) as sock:
        assert _read_all(sock) == b""


def test_an_idle_keep_alive_connection_is_closed(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(_head("/healthz"))
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        assert b"connection: close" not in first.lower()

        assert _read_all(sock) == b""  # closed after the keep-alive timeout, with nothing more


# Connections


def _half_sent(server: LiveServer, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = _connect(server)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        socks.append(sock)
    return socks


def test_under_a_low_open_file_limit_half_open_sockets_do_not_lock_clients_out(tmp_path: Path) -> None:
    # The header timeout is long here: the sockets must still be open when the client comes.
    live = start_server(tmp_path, _settings(tmp_path, THOTBOT_HEADER_TIMEOUT="60"), open_files=256)
    socks = _half_sent(live, 300)
    try:
        assert httpx.get(live.url + "/healthz", timeout=PATIENCE).status_code == 200
        assert httpx.get(live.url + "/v1/version", timeout=PATIENCE).status_code == 401
    finally:
        for sock in socks:
            sock.close()
        live.stop()
    assert "Traceback" not in live.log_text()


#: A request body, sent in two parts: between them, the request is in flight.
BODY = (b'{"ke', b'ys": []}')


def _in_flight(server: LiveServer) -> socket.socket:
    """A request whose head is complete and whose body is not: the application is reading it."""
    sock = _connect(server)
    length = str(len(b"".join(BODY))).encode()
    sock.sendall(
        b"POST /v1/keys/revoke-leaked HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + length + b"\r\n\r\n" + BODY[0]
    )
    return sock


def test_when_full_the_longest_waiting_goes_never_a_request_in_flight(tmp_path: Path) -> None:
    live = start_server(
        tmp_path, _settings(tmp_path, THOTBOT_HEADER_TIMEOUT="60", THOTBOT_MAX_CONNECTIONS="8")
    )
    busy = _in_flight(live)
    socks = _half_sent(live, 12)
    try:
        # A newcomer is served: room is made by closing the oldest half-sent heads.
        assert httpx.get(live.url + "/healthz", timeout=PATIENCE).status_code == 200
        status, _, problem = _problem(_read_all(socks[0]))
        assert (status, problem["code"]) == (408, "request_timeout")
        # The oldest connection of all had a request in flight: it is still there, and answered.
        busy.sendall(BODY[1])
        assert _read_all(busy).startswith(b"HTTP/1.1 202 ")
    finally:
        for sock in [busy, *socks]:
            sock.close()
        live.stop()
    assert "Traceback" not in live.log_text()


def test_when_every_connection_is_busy_a_newcomer_gets_a_503_problem(tmp_path: Path) -> None:
    live = start_server(tmp_path, _settings(tmp_path, THOTBOT_MAX_CONNECTIONS="2"))
    busy = [_in_flight(live), _in_flight(live)]
    try:
        with _connect(live) as sock:
            status, headers, problem = _problem(_read_all(sock))
        assert (status, problem["code"]) == (503, "too_many_connections")
        assert headers["retry-after"] == "1"
    finally:
        for sock in busy:
            sock.close()
        live.stop()
