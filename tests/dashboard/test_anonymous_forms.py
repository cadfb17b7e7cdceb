"""End to end: the public forms keep no state for visitors who only look (signed double-submit CSRF)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from http.cookies import SimpleCookie

import httpx
import pytest

from tests.dashboard.helpers import PASSWORD, csrf_token
from tests.live import LiveServer, start_server

TIMEOUT = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("anonymous")
    settings = {
        "THOTBOT_DATABASE_URL": f"sqlite:///{workdir / 'thotbot.db'}",
        "THOTBOT_ANON_RATE_LIMIT": "100000/minute",
    }
    live = start_server(workdir, settings, public_url=True)
    try:
        yield live
    finally:
        live.stop()


def _count(server: LiveServer, table: str) -> int:
    database = server.env["THOTBOT_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        [(count,)] = connection.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - our own names
    return int(count)


def _set_cookies(response: httpx.Response) -> SimpleCookie:
    cookies: SimpleCookie = SimpleCookie()
    for value in response.headers.get_list("set-cookie"):
        cookies.load(value)
    return cookies


def _form(server: LiveServer, path: str) -> tuple[str, str]:
    """A cookieless visit to a form page: (the CSRF cookie it sets, the token in its form)."""
    response = httpx.get(server.url + path, timeout=TIMEOUT)
    assert response.status_code == 200
    return _set_cookies(response)["thotbot_csrf"].value, csrf_token(response.text)


def _sign_up(server: LiveServer, email: str, cookie: str | None, token: str | None) -> httpx.Response:
    data = {"email": email, "password": PASSWORD}
    if token is not None:
        data["csrf_token"] = token
    headers = {"cookie": f"thotbot_csrf={cookie}"} if cookie is not None else {}
    return httpx.post(server.url + "/signup", data=data, headers=headers, timeout=TIMEOUT)


def test_page_views_write_no_row(server: LiveServer) -> None:
    sessions_before = _count(server, "web_sessions")

    cookies_set: set[str] = set()
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        for i in range(300):
            client.cookies.clear()
            response = client.get("/login" if i % 2 else "/signup")
            assert response.status_code == 200
            cookies_set.update(_set_cookies(response))

    assert _count(server, "web_sessions") == sessions_before
    assert cookies_set == {"thotbot_csrf"}
    # One signing key, made once and shared; not one row per visitor.
    assert _count(server, "web_secrets") == 1


def test_the_forms_still_work_after_many_views(server: LiveServer) -> None:
    for _ in range(20):
        _form(server, "/login")
    cookie, token = _form(server, "/signup")

    response = _sign_up(server, "after-views@example.com", cookie, token)

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    session = _set_cookies(response)["thotbot_session"].value
    overview = httpx.get(server.url + "/dashboard", headers={"cookie": f"thotbot_session={session}"})
    assert overview.status_code == 200
    assert "after-views@example.com" in overview.text


@pytest.mark.parametrize(
    "attempt", ["token of another cookie", "token without cookie", "cookie without token"]
)
def test_a_mismatched_pair_is_refused_and_changes_nothing(server: LiveServer, attempt: str) -> None:
    mine, _ = _form(server, "/signup")
    _, theirs = _form(server, "/signup")
    cookie, token = {
        "token of another cookie": (mine, theirs),
        "token without cookie": (None, theirs),
        "cookie without token": (mine, None),
    }[attempt]
    accounts, sessions = _count(server, "accounts"), _count(server, "web_sessions")

    response = _sign_up(server, "csrf-victim@example.com", cookie, token)

    assert response.status_code == 403
    assert "Nothing was changed" in response.text
    assert "thotbot_session" not in _set_cookies(response)
    assert (_count(server, "accounts"), _count(server, "web_sessions")) == (accounts, sessions)


def test_a_cookie_made_up_by_the_attacker_is_refused(server: LiveServer) -> None:
    """Planting a cookie of one's choosing gives no token for it: the token is an HMAC of it."""
    _, token = _form(server, "/signup")

    response = _sign_up(server, "planted@example.com", "A" * 43, token)

    assert response.status_code == 403


def test_sign_out_leaves_no_row_and_still_says_goodbye(server: LiveServer) -> None:
    cookie, token = _form(server, "/signup")
    signed_up = _sign_up(server, "goodbye@example.com", cookie, token)
    session = _set_cookies(signed_up)["thotbot_session"].value
    sessions = _count(server, "web_sessions")
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        client.cookies.set("thotbot_session", session)
        page = client.get("/logout")

        response = client.post("/logout", data={"csrf_token": csrf_token(page.text)}, follow_redirects=True)

        assert response.url.path == "/login"
        assert "You have signed out." in response.text
        assert "You have signed out." not in client.get("/login").text  # shown once
    assert _count(server, "web_sessions") == sessions - 1


def test_no_hsts_over_plain_http(server: LiveServer) -> None:
    response = httpx.get(server.url + "/login", timeout=TIMEOUT)

    assert "strict-transport-security" not in response.headers
