"""The whole app on the in-memory stores: no database, and a key made through the key lifecycle."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.factories import bearer, fake_key
from thotbot import __version__
from thotbot.app import create_app
from thotbot.config import load_settings
from thotbot.core.identity import Actor
from thotbot.services import build_memory_services


def test_the_app_on_memory_services_serves_a_key_made_through_the_lifecycle() -> None:
    settings = load_settings()
    services = build_memory_services(settings)
    account = services.users.create("ada@example.com", None)
    raw, record = services.key_lifecycle.create(account.id, "demo", Actor.operator())

    with TestClient(create_app(settings, services), base_url="http://localhost") as client:
        served = client.get("/v1/version", headers=bearer(raw))
        refused = client.get("/v1/version", headers=bearer(fake_key()))

    assert served.status_code == 200
    assert served.json() == {"version": __version__, "api": "v1"}
    assert refused.status_code == 401
    assert [e.action for e in services.security_log.list_for_account(account.id)] == ["key.created"]
    # The usage recorder flushed at shutdown, into the in-memory usage store.
    assert services.keys.get(record.id).last_used_at is not None
    assert sum(services.usage.daily(record.id, record.created_at.date()).values()) == 1
