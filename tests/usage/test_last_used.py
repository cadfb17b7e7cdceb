from __future__ import annotations

from starlette.testclient import TestClient

from tests.factories import bearer, make_api_key
from thotbot.services import Services


def test_me_and_keys_show_the_last_use_after_a_flush(client: TestClient, services: Services) -> None:
    raw, key = make_api_key(services)
    assert client.get("/v1/version", headers={**bearer(raw), "User-Agent": "acme/1.0 (ops@acme.example)"})

    client.portal.call(services.usage_recorder.flush)  # type: ignore[union-attr]

    me = client.get("/v1/me", headers={**bearer(raw), "User-Agent": "other/2.0"}).json()["key"]
    assert me["last_user_agent"] == "acme/1.0 (ops@acme.example)"
    assert me["last_used_at"] is not None
    [listed] = client.get("/v1/keys", headers=bearer(raw)).json()["keys"]
    assert listed["id"] == key.id
    assert listed["last_user_agent"] in ("acme/1.0 (ops@acme.example)", "other/2.0")
