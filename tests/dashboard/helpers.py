"""Driving the dashboard through the TestClient: read forms' hidden tokens, sign up, create keys."""

from __future__ import annotations

import html
import re

from starlette.testclient import TestClient

from thotbot.app import ThotbotApp
from thotbot.core.cookies import SESSION_COOKIE

PASSWORD = "purple monkey dishwasher 42"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
_RAW_KEY = re.compile("thot" + r"_ak_[0-9a-f]{96}")
_FIELD_ERROR = re.compile(r'<p class="field-error" id="([a-z_]+)-error">([^<]*)</p>')


def csrf_token(page: str) -> str:
    match = _CSRF.search(page)
    assert match, "the page has no CSRF token"
    return match.group(1)


def form_token(page: str) -> str:
    match = _FORM_TOKEN.search(page)
    assert match, "the page has no one-time form token"
    return match.group(1)


def raw_key(page: str) -> str:
    match = _RAW_KEY.search(page)
    assert match, "the page shows no key"
    return match.group(0)


def field_errors(page: str) -> dict[str, str]:
    return {name: html.unescape(message) for name, message in _FIELD_ERROR.findall(page)}


def session_cookie(client: TestClient) -> str | None:
    return client.cookies.get(SESSION_COOKIE)


def sign_up(client: TestClient, email: str, password: str = PASSWORD, *, verified: bool = True) -> str:
    """Sign up on the form; returns the page it lands on (the overview).

    With ``verified``, the account's address is then marked proven, as following the mailed link
    does (tests/dashboard/test_recovery.py follows the real link), so the account can create keys.
    """
    page = client.get("/signup").text
    response = client.post(
        "/signup", data={"email": email, "password": password, "csrf_token": csrf_token(page)}
    )
    assert response.status_code == 200, field_errors(response.text)
    assert response.url.path == "/dashboard"
    if verified:
        assert isinstance(client.app, ThotbotApp)
        services = client.app.services
        services.users.mark_verified(services.users.get_by_email(email).id)
    return response.text


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> None:
    page = client.get("/login").text
    response = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": csrf_token(page)}
    )
    assert response.url.path == "/dashboard", field_errors(response.text)


def create_key(
    client: TestClient,
    name: str = "laptop",
    *,
    expiry: str = "30",
    access: str = "full",
    expiry_date: str = "",
) -> tuple[str, str]:
    """Create a key on the dashboard; returns (raw key, the page that showed it)."""
    page = client.get("/dashboard/api-keys/new").text
    response = client.post(
        "/dashboard/api-keys/new",
        data={
            "csrf_token": csrf_token(page),
            "form_token": form_token(page),
            "name": name,
            "expiry": expiry,
            "expiry_date": expiry_date,
            "access": access,
        },
    )
    assert response.status_code == 200, field_errors(response.text)
    return raw_key(response.text), response.text
