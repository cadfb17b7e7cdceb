"""End to end, with THOTBOT_PUBLIC_URL https (as behind a TLS proxy): HSTS and __Host- cookies."""

from __future__ import annotations

from collections.abc import Iterator
from http.cookies import SimpleCookie

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from tests.dashboard.helpers import PASSWORD, csrf_token
from tests.live import LiveServer, start_server
from thotbot.web.hsts import HSTS_VALUE, StrictTransportSecurity

TIMEOUT = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("https")
    settings = {"THOTBOT_DATABASE_URL": f"sqlite:///{workdir / 'thotbot.db'}"}
    # The server speaks http on loopback; only the public URL says https, as behind a proxy.
    live = start_server(workdir, settings, public_url=True, scheme="https")
    try:
        yield live
    finally:
        live.stop()


def _set_cookie_headers(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def _cookies(response: httpx.Response) -> SimpleCookie:
    cookies: SimpleCookie = SimpleCookie()
    for value in _set_cookie_headers(response):
        cookies.load(value)
    return cookies


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/login"),
        ("GET", "/healthz"),
        ("GET", "/v1/version"),  # a 401 problem from the API's guard
        ("GET", "/no-such-page"),
        ("DELETE", "/login"),  # 405
        ("GET", "/dashboard/"),  # the trailing-slash redirect
    ],
)
def test_every_response_carries_hsts(server: LiveServer, method: str, path: str) -> None:
    response = httpx.request(method, server.url + path, timeout=TIMEOUT)

    assert response.headers.get_list("strict-transport-security") == [HSTS_VALUE]
    assert HSTS_VALUE == "max-age=63072000; includeSubDomains"


def test_sign_in_sets_a_host_prefixed_secure_cookie_that_the_api_refuses(server: LiveServer) -> None:
    page = httpx.get(server.url + "/signup", timeout=TIMEOUT)
    csrf = _cookies(page)["__Host-thotbot_csrf"]
    assert csrf["secure"] is True

    signed_up = httpx.post(
        server.url + "/signup",
        data={"email": "tls@example.com", "password": PASSWORD, "csrf_token": csrf_token(page.text)},
        headers={"cookie": f"__Host-thotbot_csrf={csrf.value}"},
        timeout=TIMEOUT,
    )

    assert signed_up.status_code == 303
    cookies = _cookies(signed_up)
    assert "thotbot_session" not in cookies
    session = cookies["__Host-thotbot_session"]
    assert session["secure"] is True
    assert session["path"] == "/"
    assert not session["domain"]
    assert session["httponly"] is True
    [line] = [h for h in _set_cookie_headers(signed_up) if h.startswith("__Host-thotbot_session=")]
    assert "domain=" not in line.lower()

    cookie = {"cookie": f"__Host-thotbot_session={session.value}"}
    assert httpx.get(server.url + "/dashboard", headers=cookie, timeout=TIMEOUT).status_code == 200
    refused = httpx.get(server.url + "/v1/me", headers=cookie, timeout=TIMEOUT)
    assert refused.status_code == 401
    assert refused.json()["code"] == "session_cookie_not_accepted"


def test_the_unprefixed_cookie_is_not_read_on_https(server: LiveServer) -> None:
    """A cookie a subdomain or an http page could plant (no prefix) is not a session here."""
    page = httpx.get(server.url + "/signup", timeout=TIMEOUT)
    csrf = _cookies(page)["__Host-thotbot_csrf"]

    response = httpx.post(
        server.url + "/signup",
        data={"email": "tossed@example.com", "password": PASSWORD, "csrf_token": csrf_token(page.text)},
        headers={"cookie": f"thotbot_csrf={csrf.value}"},
        timeout=TIMEOUT,
    )

    assert response.status_code == 403


def test_the_middleware_keeps_the_other_headers() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]})
        await send({"type": "http.response.body", "body": b""})

    # Not entered as a context manager: this bare app has no lifespan to run.
    response = TestClient(StrictTransportSecurity(app)).get("/")

    assert response.headers["x-a"] == "1"
    assert response.headers["strict-transport-security"] == HSTS_VALUE
