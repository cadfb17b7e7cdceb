"""Trailing-slash redirects stay on this site whatever the Host header says."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from tests.live import LiveServer, start_server

THOTBOT = str(Path(sys.executable).parent / "thotbot")
EVIL = "evil.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("slashes")
    settings = {"THOTBOT_DATABASE_URL": f"sqlite:///{workdir / 'thotbot.db'}"}
    live = start_server(workdir, settings, public_url=True)
    try:
        yield live
    finally:
        live.stop()


def _cli(server: LiveServer, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [THOTBOT, *args], input=stdin, env=server.env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _stays_here(response: httpx.Response, server: LiveServer, path: str) -> None:
    assert response.status_code in (301, 302, 307, 308)
    location = response.headers["location"]
    assert EVIL not in location
    # Resolved as a browser does, against the address it asked for: our own origin.
    assert response.request.url.join(location) == httpx.URL(server.url + path)


def test_a_forged_host_does_not_redirect_away_from_the_dashboard(server: LiveServer) -> None:
    response = httpx.get(server.url + "/dashboard/", headers={"host": EVIL}, timeout=30)

    _stays_here(response, server, "/dashboard")


def test_a_forged_host_does_not_redirect_away_from_the_api(server: LiveServer) -> None:
    _cli(server, "users", "create", "slash@example.com", "--password-stdin", stdin="a long enough password")
    raw = _cli(server, "keys", "create", "--user", "slash@example.com", "--name", "slash")

    response = httpx.get(
        server.url + "/v1/keys/", headers={"host": EVIL, "authorization": f"Bearer {raw}"}, timeout=30
    )

    _stays_here(response, server, "/v1/keys")
    assert raw not in response.headers["location"]


def test_the_query_string_is_kept(client: TestClient) -> None:
    response = client.get("/login/?next=/dashboard", headers={"host": EVIL}, follow_redirects=False)

    assert response.status_code == 307
    assert response.headers["location"] == "/login?next=/dashboard"


def _raw_get(server: LiveServer, target: str) -> tuple[int, dict[str, str]]:
    """A GET with the request target exactly as given (an HTTP client would normalise it)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {EVIL}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), {name.lower(): value for name, value in headers.items()}


@pytest.mark.parametrize("target", ["//evil.example/", "/\\evil.example/", "/no-such-page/", "//"])
def test_what_would_leave_the_site_or_matches_nothing_is_not_found(server: LiveServer, target: str) -> None:
    status, headers = _raw_get(server, target)

    assert status == 404
    assert "location" not in headers


def test_a_path_with_a_slash_too_few_is_redirected_too(client: TestClient) -> None:
    response = client.get("/static", headers={"host": EVIL}, follow_redirects=False)

    assert response.status_code == 307
    assert response.headers["location"] == "/static/"
