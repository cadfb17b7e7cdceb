from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Sequence

import anyio
import pytest
import redis
from starlette.testclient import TestClient

import thotbot.app
from tests.factories import bearer, make_api_key
from tests.services import redis_url
from thotbot import keychanges
from thotbot.app import create_app
from thotbot.config import load_settings
from thotbot.core.revocation import RevokedReason
from thotbot.keychanges import KeyChangeBus
from thotbot.services import Services, build_services
from thotbot.storage.keys import SQLKeyStore
from thotbot.storage.migrate import upgrade


@pytest.fixture
def channel(monkeypatch: pytest.MonkeyPatch) -> str:
    # A channel of its own, so parallel runs sharing the Redis server do not hear each other.
    name = f"thotbot-test:{uuid.uuid4().hex}"
    monkeypatch.setattr(keychanges, "CHANNEL", name)
    return name


class TestStoreAnnouncesChanges:
    def test_each_change_is_announced_after_commit(self, services: Services) -> None:
        heard: list[list[str]] = []
        store = SQLKeyStore(services.db, on_change=lambda ids: heard.append(list(ids)))
        account = services.users.create("changes@example.com", None)
        _, record = store.create(account.id, "k")

        store.rename(record.id, "renamed")
        store.grant(record.id, "account:security")
        store.grant(record.id, "account:security")  # no change, no announcement
        store.revoke(record.id)
        store.revoke(record.id)

        assert heard == [[record.id]] * 3

    def test_revoke_by_hashes_announces_the_revoked_only(self, services: Services) -> None:
        heard: list[Sequence[str]] = []
        store = SQLKeyStore(services.db, on_change=heard.append)
        account = services.users.create("leaked@example.com", None)
        raw, record = store.create(account.id, "k")
        from thotbot.core.keys import hash_key

        store.revoke_by_hashes([hash_key(raw), b"x" * 32], reason=RevokedReason.LEAKED)

        assert [list(ids) for ids in heard] == [[record.id]]


@pytest.mark.redis
def test_published_changes_reach_a_listener(channel: str) -> None:
    url = redis_url()
    heard: list[list[str]] = []
    arrived = threading.Event()

    def on_change(ids: list[str]) -> None:
        heard.append(ids)
        arrived.set()

    async def scenario() -> None:
        stop = asyncio.Event()
        listener = asyncio.create_task(KeyChangeBus(url).listen(on_change, stop))
        publisher = KeyChangeBus(url)
        deadline = time.monotonic() + 10
        # Publish until the listener has subscribed and heard it (bounded, no timing assertion).
        while not arrived.is_set() and time.monotonic() < deadline:
            await anyio.to_thread.run_sync(publisher.publish, ["key_a", "key_b"])
            await asyncio.sleep(0.05)
        stop.set()
        await listener
        publisher.close()

    asyncio.run(scenario())

    assert heard
    assert heard[0] == ["key_a", "key_b"]


def test_unreachable_redis_never_fails_a_change(caplog: pytest.LogCaptureFixture) -> None:
    bus = KeyChangeBus("redis://127.0.0.1:1/0")

    bus.publish(["key_a"])

    assert "poll it within a second" in caplog.text
    bus.close()


@pytest.mark.redis
def test_a_server_evicts_a_key_revoked_elsewhere_without_waiting_for_its_poll(
    database_url: str, channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The poll is slowed to a minute, so only the Redis message can explain the eviction.
    monkeypatch.setattr(thotbot.app, "POLL_INTERVAL", 60.0)
    settings = load_settings(database_url=database_url, redis_url=redis_url())
    server = build_services(settings)
    upgrade(server.engine)
    elsewhere = build_services(settings)  # another instance, or the CLI
    raw, record = make_api_key(elsewhere)

    with TestClient(create_app(settings, server), base_url="http://localhost") as client:
        assert client.get("/v1/version", headers=bearer(raw)).status_code == 200  # now cached
        _wait_for_subscriber(channel)
        elsewhere.keys.revoke(record.id)

        deadline = time.monotonic() + 10
        status = 200
        while status == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
            status = client.get("/v1/version", headers=bearer(raw)).status_code

    elsewhere.key_changes.close()
    elsewhere.engine.dispose()
    server.engine.dispose()  # else its pooled connections are closed by the garbage collector, later
    assert status == 401


def _wait_for_subscriber(channel: str) -> None:
    client = redis.Redis.from_url(redis_url())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) < 1:
        time.sleep(0.02)
    client.close()
