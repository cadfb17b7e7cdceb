"""Last-used data: kept in memory on the request path, written in batches, never lost, never older."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from tests.factories import bearer, make_api_key
from thotbot.services import Services
from thotbot.storage.usage import UsageBatch
from thotbot.usage import UsageRecorder


def test_a_request_is_written_by_the_flush(client: TestClient, services: Services) -> None:
    raw, record = make_api_key(services)
    before = datetime.now(UTC)

    assert client.get("/v1/version", headers={**bearer(raw), "User-Agent": "acme/1.0"}).status_code == 200
    anyio.run(services.usage_recorder.flush)  # the app's flusher may have been first: either way

    stored = services.keys.get(record.id)
    assert stored.last_used_at is not None
    assert stored.last_used_at >= before - timedelta(seconds=1)
    assert stored.last_user_agent == "acme/1.0"


def test_a_failed_write_keeps_the_batch(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    _, record = make_api_key(services)
    recorder = UsageRecorder(services.usage)
    recorder.record(record.id, time.time(), "acme/1.0")
    write = services.usage.write

    def database_down(batch: UsageBatch) -> None:
        raise OperationalError("UPDATE api_keys ...", {}, ConnectionRefusedError("database is down"))

    monkeypatch.setattr(services.usage, "write", database_down)
    assert anyio.run(recorder.flush) == 0
    assert services.keys.get(record.id).last_used_at is None
    monkeypatch.setattr(services.usage, "write", write)

    assert anyio.run(recorder.flush) == 1
    assert services.keys.get(record.id).last_user_agent == "acme/1.0"


def test_newer_data_wins_across_instances(services: Services) -> None:
    _, record = make_api_key(services)
    now = time.time()
    this, other = UsageRecorder(services.usage), UsageRecorder(services.usage)
    this.record(record.id, now, "new/2.0")
    anyio.run(this.flush)

    # Another instance flushes a use older than what is stored.
    other.record(record.id, now - 60, "old/1.0")
    anyio.run(other.flush)

    stored = services.keys.get(record.id)
    assert stored.last_used_at is not None
    assert abs(stored.last_used_at.timestamp() - now) < 0.001
    assert stored.last_user_agent == "new/2.0"


def test_newest_use_in_memory_wins(services: Services) -> None:
    _, record = make_api_key(services)
    now = time.time()
    recorder = UsageRecorder(services.usage)
    recorder.record(record.id, now - 10, "first/1.0")
    recorder.record(record.id, now, "second/1.0")

    anyio.run(recorder.flush)

    assert services.keys.get(record.id).last_user_agent == "second/1.0"


def test_usage_of_a_deleted_key_is_dropped_quietly(services: Services) -> None:
    recorder = UsageRecorder(services.usage)
    recorder.record("key_0000000000000000", time.time(), None)

    anyio.run(recorder.flush)

    assert recorder.pending == 0
