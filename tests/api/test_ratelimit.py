from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.factories import bearer, fake_key, make_api_key
from thotbot.app import create_app
from thotbot.config import load_settings
from thotbot.services import Services, build_services
from thotbot.storage.migrate import upgrade


@pytest.fixture
def limited(database_url: str) -> Iterator[tuple[TestClient, Services]]:
    settings = load_settings(database_url=database_url, rate_limit="3/minute", anon_rate_limit="2/minute")
    services = build_services(settings)
    upgrade(services.engine)
    with TestClient(create_app(settings, services), base_url="http://localhost") as client:
        yield client, services
    services.engine.dispose()


def test_success_carries_ratelimit_headers(limited: tuple[TestClient, Services]) -> None:
    client, services = limited
    raw, _ = make_api_key(services)

    response = client.get("/v1/version", headers=bearer(raw))

    assert response.status_code == 200
    assert response.headers["ratelimit-limit"] == "3"
    assert response.headers["ratelimit-remaining"] == "2"
    assert 0 < int(response.headers["ratelimit-reset"]) <= 60


def test_key_over_its_limit_gets_429_with_retry_after(limited: tuple[TestClient, Services]) -> None:
    client, services = limited
    raw, _ = make_api_key(services)
    for _ in range(3):
        assert client.get("/v1/version", headers=bearer(raw)).status_code == 200

    response = client.get("/v1/version", headers=bearer(raw))

    assert response.status_code == 429
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "rate_limited"
    assert 0 < int(response.headers["retry-after"]) <= 60
    assert response.headers["ratelimit-remaining"] == "0"
    assert response.headers["cache-control"] == "no-store"


def test_limits_are_per_key(limited: tuple[TestClient, Services]) -> None:
    client, services = limited
    first, _ = make_api_key(services)
    second, _ = make_api_key(services)
    for _ in range(4):
        client.get("/v1/version", headers=bearer(first))

    assert client.get("/v1/version", headers=bearer(second)).status_code == 200


def test_failed_attempts_are_limited_per_address(limited: tuple[TestClient, Services]) -> None:
    client, services = limited
    raw, _ = make_api_key(services)
    client.get("/v1/version", headers=bearer(raw))  # now cached

    codes = [client.get("/v1/version", headers=bearer(fake_key(d))).status_code for d in "abcd"]

    assert codes == [401, 401, 429, 429]
    assert client.get("/v1/version").status_code == 429
    # A known good key from the same address still works: it is limited on its own budget.
    assert client.get("/v1/version", headers=bearer(raw)).status_code == 200


def test_revoke_leaked_is_limited_per_address(limited: tuple[TestClient, Services]) -> None:
    client, _ = limited

    codes = [client.post("/v1/keys/revoke-leaked", json={"keys": [fake_key()]}).status_code for _ in range(3)]

    assert codes == [202, 202, 429]


def test_a_rate_limited_request_is_in_its_keys_request_log(limited: tuple[TestClient, Services]) -> None:
    client, services = limited
    raw, key = make_api_key(services)
    statuses = [client.get("/v1/version", headers=bearer(raw)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]

    # Written by the app's own background flush, about every second.
    deadline = time.monotonic() + 30
    while len(logged := services.request_log.recent(key.id)) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)

    assert [(r.status, r.code) for r in logged] == [(429, "rate_limited"), *[(200, None)] * 3]
