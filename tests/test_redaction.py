"""A client that puts its key where it does not belong (a User-Agent) never gets it stored."""

from __future__ import annotations

import anyio
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from tests.factories import make_api_key
from thotbot import keys
from thotbot.services import Services
from thotbot.useragents import clean


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("acme/1.0", "acme/1.0"),
        ("acme/1.0 thot_ak_0123abcd", "acme/1.0 thot_ak_[redacted]"),
        ("THOT_AK_ABCDEF x", "thot_ak_[redacted] x"),
        ("thot_ak_", "thot_ak_[redacted]"),
    ],
)
def test_redact(raw: str, expected: str) -> None:
    assert keys.redact(raw) == expected


def test_clean_redacts_a_whole_key() -> None:
    raw = keys.generate()

    cleaned = clean(f"my-app/1.0 ({raw})")

    assert cleaned == "my-app/1.0 (thot_ak_[redacted])"


def test_key_in_user_agent_is_stored_nowhere(client: TestClient, services: Services) -> None:
    raw, record = make_api_key(services)
    headers = {"Authorization": f"Bearer {raw}", "User-Agent": f"leaky/1.0 ({raw})"}

    assert client.get("/v1/version", headers=headers).status_code == 200
    assert client.delete(f"/v1/keys/{record.id}", headers=headers).status_code == 204
    anyio.run(services.last_used.flush)

    with services.engine.connect() as connection:
        tables = [
            row[0]
            for row in connection.execute(
                text(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                    if connection.dialect.name == "sqlite"
                    else "SELECT tablename FROM pg_tables WHERE schemaname='public'"
                )
            )
        ]
        dump = "\n".join(
            repr(row)
            for table in tables
            for row in connection.execute(text(f'SELECT * FROM "{table}"'))  # noqa: S608 - names from the catalogue
        )
    assert "leaky/1.0" in dump  # the User-Agent itself was recorded...
    assert raw not in dump  # ...but never the key in it
    assert raw[len(keys.PREFIX) :][:16] not in dump
