"""GET /v1/me: who the key belongs to, and the key itself (metadata only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
from starlette.testclient import TestClient

from tests.api.test_auth import assert_problem
from tests.factories import bearer, make_api_key, make_user
from thotbot.services import Services


def test_me(client: TestClient, services: Services) -> None:
    account = make_user(services, "Grace@Example.com")
    raw, record = make_api_key(
        services, account, name="laptop", expires_at=datetime(2031, 5, 6, 7, 8, tzinfo=UTC)
    )

    response = client.get("/v1/me", headers=bearer(raw))

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["account"] == {"id": account.id, "email": "grace@example.com"}
    key = body["key"]
    assert key.keys() >= {"id", "name", "hint", "created_at", "expires_at", "last_used_at"}
    assert key["id"] == record.id
    assert key["name"] == "laptop"
    assert key["hint"] == record.hint
    assert key["hint"] == raw[:12] + "…" + raw[-4:]
    assert key["expires_at"] == "2031-05-06T07:08:00Z"
    assert key["last_used_at"] is None
    assert datetime.fromisoformat(key["created_at"]) == record.created_at
    assert raw not in response.text
    assert raw[12:-4] not in response.text


def test_me_shows_last_used_once_flushed(client: TestClient, services: Services) -> None:
    raw, record = make_api_key(services)
    before = datetime.now(UTC)
    assert client.get("/v1/version", headers={**bearer(raw), "User-Agent": "acme/2.0"}).status_code == 200

    anyio.run(services.usage_recorder.flush)
    key = client.get("/v1/me", headers=bearer(raw)).json()["key"]

    assert key["last_used_at"] is not None
    assert datetime.fromisoformat(key["last_used_at"]) >= before - timedelta(seconds=1)
    assert services.keys.get(record.id).last_used_at is not None


def test_me_with_a_read_only_key(client: TestClient, services: Services) -> None:
    raw, record = make_api_key(services, read_only=True)

    response = client.get("/v1/me", headers=bearer(raw))

    assert response.status_code == 200
    assert response.json()["key"]["id"] == record.id


def test_me_names_only_the_calling_key(client: TestClient, services: Services) -> None:
    account = make_user(services)
    raw_a, a = make_api_key(services, account)
    raw_b, b = make_api_key(services, account)

    assert client.get("/v1/me", headers=bearer(raw_a)).json()["key"]["id"] == a.id
    assert client.get("/v1/me", headers=bearer(raw_b)).json()["key"]["id"] == b.id


def test_me_needs_a_key(client: TestClient) -> None:
    assert_problem(client.get("/v1/me"), 401, "missing_api_key")
