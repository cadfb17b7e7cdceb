"""The app's lifespan: what a graceful shutdown finishes before the process ends."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.factories import make_api_key
from tests.smtp import Inbox
from thotbot.app import create_app
from thotbot.config import load_settings
from thotbot.services import Services, build_services
from thotbot.storage.migrate import upgrade


def test_shutdown_delivers_mail_waiting_for_a_retry(
    tmp_path: Path, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="thotbot.mail")
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'thotbot.db'}", smtp_url=inbox.url)
    services = build_services(settings)
    upgrade(services.engine)
    inbox.refuse.append("451 4.3.0 try again later")

    with TestClient(create_app(settings, services)):
        services.mailer.send("ann@example.com", "hello", "a message")
        # The first attempt is refused and the next is due in 2 s; shutdown does not wait for it.
        deadline = time.monotonic() + 10
        while "retry 1 of" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "retry 1 of" in caplog.text
        assert inbox.received == []

    assert [r.rcpt_tos for r in inbox.received] == [["ann@example.com"]]
    assert inbox.attempts == 2


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", "/v1/version", "GET"),
        ("POST", "/healthz", "GET"),
        ("POST", "/openapi/api.yaml", "GET"),
        ("DELETE", "/login", "GET"),
    ],
)
def test_a_405_names_what_the_path_accepts_in_a_problem(
    client: TestClient, services: Services, method: str, path: str, allowed: str
) -> None:
    raw, _ = make_api_key(services)

    response = client.request(method, path, headers={"Authorization": f"Bearer {raw}"})

    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "method_not_allowed"
    assert allowed in [m.strip() for m in response.headers["allow"].split(",")]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        # Two routes share the path: Allow names the methods of both.
        ("OPTIONS", "/v1/keys", "GET, HEAD, POST"),
        ("PUT", "/v1/account/passkeys", "GET, HEAD, POST"),
        # A path of its own beside /v1/keys/{key_id}: not a key id to look up.
        ("DELETE", "/v1/keys/revoke-leaked", "POST"),
        ("GET", "/v1/keys/revoke-leaked", "POST"),
    ],
)
def test_a_405_on_the_api_names_every_method_the_path_takes(
    client: TestClient, services: Services, method: str, path: str, allow: str
) -> None:
    raw, _ = make_api_key(services)

    response = client.request(method, path, headers={"Authorization": f"Bearer {raw}"})

    assert response.status_code == 405, response.text
    assert response.json()["code"] == "method_not_allowed"
    assert response.headers["allow"] == allow


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        # Each page's form takes POST on a route of its own beside the page's GET.
        ("PUT", "/login", "GET, HEAD, POST"),
        ("DELETE", "/signup", "GET, HEAD, POST"),
        ("PATCH", "/forgot-password", "GET, HEAD, POST"),
        ("PUT", "/dashboard/api-keys/new", "GET, HEAD, POST"),
    ],
)
def test_a_405_on_the_dashboard_names_every_method_the_path_takes(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    response = client.request(method, path)

    assert response.status_code == 405, response.text
    assert response.json()["code"] == "method_not_allowed"
    assert response.headers["allow"] == allow


def test_every_page_has_an_icon_and_a_description(client: TestClient) -> None:
    # Lighthouse: no 404 for the icon a browser asks for, and a meta description on every page.
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.url.path == "/static/favicon.svg"
    for path in ("/login", "/signup", "/forgot-password"):
        page = client.get(path).text
        assert '<link rel="icon" href="/static/favicon.svg' in page, path
        assert '<meta name="description" content="Thotbot: ' in page, path


def test_usage_flushes_take_at_most_a_sixtieth_of_the_time() -> None:
    # The two flushes (usage, request log) take a thirtieth of the process between them.
    from thotbot.app import flush_pause

    assert flush_pause(0.001) == 2.0  # quick flushes: every 2 s
    assert flush_pause(0.5) == 0.5 * 59  # a long one: the pause is 59 times as long
    assert flush_pause(4.0) == 4.0 * 59  # 50,000 keys in use on a slow machine took 3.2 s
    assert flush_pause(10.0) == 300.0  # and never more than five minutes


class _Growing:
    """A recorder whose pending work grows with time, as when keys keep coming into use: the CPU a
    flush of it would take is ``cost(seconds since it was made)``."""

    def __init__(self, cost: Callable[[float], float]) -> None:
        self._cost = cost
        self._made = time.monotonic()
        self.looks = 0

    @property
    def next_flush_cpu(self) -> float:
        self.looks += 1
        return self._cost(time.monotonic() - self._made)


def _waited(recorder: _Growing, least: float, most: float, stop: asyncio.Event | None = None) -> float:
    from thotbot.app import _paced, until_due

    async def wait() -> float:
        started = time.monotonic()
        pause = functools.partial(_paced, least=least, most=most)
        await until_due(recorder, stop or asyncio.Event(), pause)
        return time.monotonic() - started

    return asyncio.run(wait())


def test_a_flush_waits_until_the_time_since_the_last_pays_for_what_is_pending_by_then() -> None:
    # Right after a cheap flush 1 ms of CPU's worth is pending; keys keep coming into use for a
    # quarter of a second, until a flush would take 6 ms. Paced by what was pending at first, it
    # would come after 59 ms; it waits for 59 times 6 ms, however late each look comes (at t < 0.25
    # s a flush would take more than t / 59).
    recorder = _Growing(lambda t: min(0.006, 0.001 + 0.02 * t))

    assert _waited(recorder, least=0.05, most=10.0) >= 0.006 * 59
    assert recorder.looks >= 2


def test_a_flush_is_due_at_least_and_at_most_so_long_after_the_last() -> None:
    assert _waited(_Growing(lambda t: 0.0), least=0.05, most=10.0) >= 0.05
    assert 0.2 <= _waited(_Growing(lambda t: 100.0), least=0.05, most=0.2) < 5.0


def test_a_server_stopping_stops_the_wait_for_a_flush() -> None:
    stop = asyncio.Event()
    stop.set()
    assert _waited(_Growing(lambda t: 100.0), least=0.05, most=60.0, stop=stop) < 30.0
