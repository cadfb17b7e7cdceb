from __future__ import annotations

from starlette.testclient import TestClient

from tests.factories import bearer, make_api_key
from thotbot import __version__
from thotbot.services import Services


def test_version_with_a_key(client: TestClient, services: Services) -> None:
    raw, _ = make_api_key(services)

    response = client.get("/v1/version", headers=bearer(raw))

    assert response.status_code == 200
    assert response.json() == {"version": __version__, "api": "v1"}
    assert response.headers["cache-control"] == "no-store"


def test_version_without_a_key(client: TestClient) -> None:
    response = client.get("/v1/version")

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "missing_api_key"
