"""The API Keys page's switch for the daily mail about failing keys, against a live server: it turns
the mail off and on without a fresh sign-in, and refuses forged posts (no token, another session's
token, another site) and nonsense values, leaving the setting as it was."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dashboard.helpers import PASSWORD, csrf_token
from tests.factories import make_user
from tests.live import LiveServer, start_server
from thotbot.config import load_settings
from thotbot.services import Services, build_services
from thotbot.storage import AccountRecord

PATH = "/dashboard/api-keys/integration-mail"


@pytest.fixture(scope="module")
def _live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Services]]:
    workdir: Path = tmp_path_factory.mktemp("integration-mail")
    database_url = f"sqlite:///{workdir / 'thotbot.db'}"
    live = start_server(workdir, {"THOTBOT_DATABASE_URL": database_url})  # migrates it
    services = build_services(load_settings(database_url=database_url))
    yield live, services
    services.engine.dispose()
    live.stop()


@pytest.fixture
def server(_live: tuple[LiveServer, Services]) -> LiveServer:
    return _live[0]


@pytest.fixture
def services(_live: tuple[LiveServer, Services]) -> Services:
    return _live[1]


@pytest.fixture
def account(services: Services) -> AccountRecord:
    return make_user(services, password=PASSWORD)


def _browser(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30, follow_redirects=True)


def _sign_in(browser: httpx.Client, email: str) -> None:
    page = browser.get("/login").text
    response = browser.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf_token(page)}
    )
    assert response.url.path == "/dashboard"


def _checked(page: str) -> str:
    match = re.search(r'name="integration_mail" value="(on|off)" checked', page)
    assert match, "no choice is checked"
    return match.group(1)


def test_the_owner_turns_the_mail_off_and_on(
    server: LiveServer, services: Services, account: AccountRecord
) -> None:
    with _browser(server) as browser:
        _sign_in(browser, account.email)
        page = browser.get("/dashboard/api-keys").text
        assert _checked(page) == "on"

        off = browser.post(PATH, data={"csrf_token": csrf_token(page), "integration_mail": "off"})

        assert off.status_code == 200
        assert off.url.path == "/dashboard/api-keys"
        assert "No more mail about failing keys." in off.text
        assert _checked(off.text) == "off"
        assert services.failing.integration_mail(account.id) is False

        on = browser.post(PATH, data={"csrf_token": csrf_token(off.text), "integration_mail": "on"})

        assert _checked(on.text) == "on"
        assert services.failing.integration_mail(account.id) is True


def test_a_post_without_a_token_is_refused(
    server: LiveServer, services: Services, account: AccountRecord
) -> None:
    with _browser(server) as browser:
        _sign_in(browser, account.email)

        response = browser.post(PATH, data={"integration_mail": "off"})

    assert response.status_code == 403
    assert services.failing.integration_mail(account.id) is True


def test_another_sessions_token_is_refused(
    server: LiveServer, services: Services, account: AccountRecord
) -> None:
    with _browser(server) as attacker:
        attacker_token = csrf_token(attacker.get("/login").text)
    with _browser(server) as victim:
        _sign_in(victim, account.email)

        response = victim.post(PATH, data={"csrf_token": attacker_token, "integration_mail": "off"})

    assert response.status_code == 403
    assert services.failing.integration_mail(account.id) is True


def test_a_cross_site_post_is_refused(server: LiveServer, services: Services, account: AccountRecord) -> None:
    with _browser(server) as browser:
        _sign_in(browser, account.email)
        token = csrf_token(browser.get("/dashboard/api-keys").text)

        response = browser.post(
            PATH,
            data={"csrf_token": token, "integration_mail": "off"},
            headers={"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
        )

    assert response.status_code == 403
    assert services.failing.integration_mail(account.id) is True


@pytest.mark.parametrize("value", [None, "", "yes", "OFF", "on\x00"])
def test_a_value_other_than_on_or_off_is_a_clear_422(
    server: LiveServer, services: Services, account: AccountRecord, value: str | None
) -> None:
    with _browser(server) as browser:
        _sign_in(browser, account.email)
        data = {"csrf_token": csrf_token(browser.get("/dashboard/api-keys").text)}
        if value is not None:
            data["integration_mail"] = value

        response = browser.post(PATH, data=data)

    assert response.status_code == 422
    assert "Choose on or off" in response.text
    assert "Traceback" not in response.text
    assert services.failing.integration_mail(account.id) is True


def test_signed_out_posts_change_nothing(
    server: LiveServer, services: Services, account: AccountRecord
) -> None:
    with _browser(server) as browser:
        token = csrf_token(browser.get("/login").text)

        response = browser.post(PATH, data={"csrf_token": token, "integration_mail": "off"})

    assert response.url.path == "/login"
    assert services.failing.integration_mail(account.id) is True
