"""Cross-origin requests to /v1: no origin is granted, and a preflight gets a deliberate 204."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from starlette.testclient import TestClient

from tests.factories import bearer, make_api_key
from tests.live import LiveServer, start_server
from thotbot.services import Services

TIMEOUT = 30
ORIGIN = "https://app.example.com"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("cors")
    settings = {
        "THOTBOT_DATABASE_URL": f"sqlite:///{workdir / 'thotbot.db'}",
        # Low, so that a preflight charged to the address would show.
        "THOTBOT_ANON_RATE_LIMIT": "3/minute",
    }
    live = start_server(workdir, settings)
    try:
        yield live
    finally:
        live.stop()


def _raw(server: LiveServer, request: str) -> tuple[str, dict[str, str], bytes]:
    """Send ``request`` as written, byte for byte, and read the whole answer (Connection: close)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request.replace("\n", "\r\n").encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status_line, headers, body


def _preflight(path: str) -> str:
    return (
        f"OPTIONS {path} HTTP/1.1\n"
        "Host: api.example.com\n"
        f"Origin: {ORIGIN}\n"
        "Access-Control-Request-Method: POST\n"
        "Access-Control-Request-Headers: authorization, content-type\n"
        "Connection: close\n"
        "\n"
    )


@pytest.mark.parametrize("path", ["/v1/keys", "/v1/keys/revoke-leaked", "/v1/no-such-path"])
def test_a_preflight_is_answered_204_and_grants_nothing(server: LiveServer, path: str) -> None:
    status_line, headers, body = _raw(server, _preflight(path))

    assert status_line == "HTTP/1.1 204 No Content"
    assert not [name for name in headers if name.startswith("access-control-")]
    assert headers["vary"] == "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    assert headers["cache-control"] == "no-store"
    assert body == b""


def test_preflights_cost_nothing_against_the_address_limit(server: LiveServer) -> None:
    # The limit is 3 a minute: charged, these five would have run it out.
    for _ in range(5):
        status_line, headers, _ = _raw(server, _preflight("/v1/me"))
        assert status_line == "HTTP/1.1 204 No Content"
        assert "ratelimit-remaining" not in headers

    refused = httpx.get(server.url + "/v1/me", timeout=TIMEOUT)

    assert refused.status_code == 401
    assert refused.headers["ratelimit-limit"] == "3"


# In process: what is not a preflight keeps its answer.


def test_options_without_the_cors_headers_is_unauthenticated(client: TestClient) -> None:
    response = client.options("/v1/keys", headers={"Origin": ORIGIN})

    assert response.status_code == 401
    assert response.json()["code"] == "missing_api_key"


def test_a_preflight_with_a_key_in_the_url_is_still_refused(client: TestClient) -> None:
    response = client.options("/v1/keys?key=thot_ak_" + "0" * 96, headers=PREFLIGHT)

    assert response.status_code == 400
    assert response.json()["code"] == "api_key_in_url"


def test_a_cross_origin_request_with_a_key_is_served_but_not_shared(
    client: TestClient, services: Services
) -> None:
    # What a browser would send if it skipped the preflight: the answer grants it no reading.
    raw, _ = make_api_key(services)

    response = client.get("/v1/version", headers={**bearer(raw), "Origin": ORIGIN})

    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
