"""Retries: after a 429 or a 503 the client waits what Retry-After says, else backs off with jitter,
at most max_retries times; a real server's 429 is waited out. The waits are recorded, not slept."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.factories import fake_key, make_api_key
from tests.fakeapi import Answer, FakeAPI, fake_api, ok, problem
from tests.livecli import EMAIL, Deployment, deploy
from tests.services import free_port
from thotbot import __version__
from thotbot.client import (
    APIError,
    AsyncClient,
    Client,
    PermissionDenied,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
    UnexpectedResponse,
    Version,
)
from thotbot.client._base import BACKOFF_BASE, Call, retry_after_seconds
from thotbot.config import load_settings
from thotbot.services import build_services

APP: dict[str, Any] = {"app": "retry-tests", "version": "1.0", "contact": "tests@example.com"}
VERSION = ok({"version": "9.9.9", "api": "v1"})


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    with fake_api() as api:
        yield api


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """What Client and AsyncClient would have slept, in order; nothing is slept."""
    waited: list[float] = []

    async def record_async(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(Client, "_sleep", staticmethod(waited.append))
    monkeypatch.setattr(AsyncClient, "_sleep", staticmethod(record_async))
    return waited


def _client(api: FakeAPI, **extra: Any) -> Client:
    return Client(api_key=fake_key(), base_url=api.url, **{**APP, **extra})


def test_a_429_is_retried_after_its_retry_after(api: FakeAPI, waits: list[float]) -> None:
    api.script(problem(429, "rate_limited", **{"Retry-After": "7"}), VERSION)
    with _client(api) as client:
        assert client.version() == Version("9.9.9", "v1")
    assert len(api.seen) == 2
    [wait] = waits
    assert 7 <= wait <= 7.7  # what the server asked, and up to a tenth more at random


def test_a_503_without_retry_after_backs_off_exponentially(api: FakeAPI, waits: list[float]) -> None:
    busy = problem(503, "service_unavailable")
    api.script(busy, busy, busy, VERSION)
    with _client(api, max_retries=3) as client:
        client.version()
    assert len(api.seen) == 4
    for attempt, wait in enumerate(waits):
        ceiling = BACKOFF_BASE * 2**attempt
        assert ceiling / 2 <= wait <= ceiling


def test_retries_stop_at_max_retries(api: FakeAPI, waits: list[float]) -> None:
    api.script(problem(503, "too_many_connections", **{"Retry-After": "1"}))
    with _client(api, max_retries=2) as client, pytest.raises(ServiceUnavailable) as caught:
        client.version()
    assert len(api.seen) == 3
    assert len(waits) == 2
    assert caught.value.code == "too_many_connections"
    assert caught.value.retry_after == 1


def test_max_retries_zero_raises_the_429_at_once(api: FakeAPI, waits: list[float]) -> None:
    api.script(problem(429, "rate_limited", **{"Retry-After": "7", "RateLimit-Remaining": "0"}))
    with _client(api, max_retries=0) as client, pytest.raises(RateLimited) as caught:
        client.version()
    assert waits == []
    assert caught.value.retry_after == 7
    assert caught.value.headers["ratelimit-remaining"] == "0"


def test_a_retry_after_over_a_minute_is_not_waited_out(api: FakeAPI, waits: list[float]) -> None:
    api.script(problem(429, "rate_limited", **{"Retry-After": "120"}), VERSION)
    with _client(api) as client, pytest.raises(RateLimited) as caught:
        client.version()
    assert waits == []
    assert len(api.seen) == 1
    assert caught.value.retry_after == 120


def test_other_errors_are_not_retried(api: FakeAPI, waits: list[float]) -> None:
    api.script(problem(500, "internal_error"), VERSION)
    with _client(api) as client, pytest.raises(ServerError):
        client.version()
    assert waits == []
    assert len(api.seen) == 1


def test_a_post_is_not_retried_unless_it_is_idempotent(api: FakeAPI, waits: list[float]) -> None:
    busy = problem(503, "service_unavailable")
    api.script(busy, busy, ok({"status": "accepted"}))
    with _client(api) as client:
        with pytest.raises(ServiceUnavailable):
            client._run(Call("POST", "/v1/keys", lambda body: body, body={"name": "x"}))
        client.revoke_leaked([fake_key("b")])  # revoking twice revokes once: retried
    assert [seen.method for seen in api.seen] == ["POST", "POST", "POST"]
    assert len(waits) == 1


def test_a_refused_connection_is_retried_then_raised(waits: list[float]) -> None:
    client = Client(api_key=fake_key(), base_url=f"http://127.0.0.1:{free_port()}", max_retries=2, **APP)
    with client, pytest.raises(TransportError):
        client.version()
    assert len(waits) == 2


def test_the_async_client_retries_alike(api: FakeAPI, waits: list[float]) -> None:
    api.script(problem(429, "rate_limited", **{"Retry-After": "3"}), VERSION)

    async def version() -> Version:
        async with AsyncClient(api_key=fake_key(), base_url=api.url, **APP) as client:
            return await client.version()

    assert asyncio.run(version()) == Version("9.9.9", "v1")
    [wait] = waits
    assert 3 <= wait <= 3.3


@pytest.mark.parametrize(
    ("answer", "cls", "code"),
    [
        (problem(403, "a_newer_refusal"), PermissionDenied, "a_newer_refusal"),
        (problem(418, "teapot"), APIError, "teapot"),
        (Answer(502, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"}), ServerError, "http_502"),
    ],
)
def test_an_unknown_code_maps_by_status(api: FakeAPI, answer: Answer, cls: type[APIError], code: str) -> None:
    api.script(answer)
    with _client(api) as client, pytest.raises(APIError) as caught:
        client.version()
    assert type(caught.value) is cls
    assert caught.value.code == code


def test_a_redirect_is_not_followed(api: FakeAPI) -> None:
    api.script(Answer(308, b"", {"Location": "https://elsewhere.example/v1/version"}))
    with _client(api) as client, pytest.raises(UnexpectedResponse, match="set base_url"):
        client.version()
    assert len(api.seen) == 1


def test_retry_after_as_an_http_date() -> None:
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def _until_refused(client: Client) -> None:
    while True:
        client.version()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A server that lets each key make one request a second."""
    deployment = deploy(tmp_path_factory.mktemp("limited"), {"THOTBOT_RATE_LIMIT": "1/second"})
    yield deployment
    deployment.stop()


def test_a_real_429_is_waited_out(limited: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    services = build_services(load_settings(database_url=limited.env["THOTBOT_DATABASE_URL"]))
    try:
        raw, _ = make_api_key(services, services.users.get_by_email(EMAIL))
    finally:
        services.engine.dispose()
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        Client._sleep(seconds)

    impatient = Client(api_key=raw, base_url=limited.url, max_retries=0, **APP)
    patient = Client(api_key=raw, base_url=limited.url, max_retries=3, **APP)
    patient._sleep = sleep
    with impatient, patient:
        # Past the limit; then at once the patient client, which meets the same window. Should a
        # window end just between the two, the patient client is not refused: try again.
        for _ in range(5):
            with pytest.raises(RateLimited) as caught:
                _until_refused(impatient)
            assert caught.value.retry_after is not None
            assert caught.value.retry_after <= 1
            assert caught.value.headers["ratelimit-limit"] == "1"
            assert patient.version() == Version(__version__, "v1")
            if waited:
                break
    assert waited
    assert all(wait <= 1.1 for wait in waited)
