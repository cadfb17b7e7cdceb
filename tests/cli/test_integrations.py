from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import make_api_key, make_user
from thotbot.cli import main
from thotbot.services import Services
from thotbot.storage import KeyRecord
from thotbot.storage.usage import AgentCount, DayCount, UsageBatch

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _database(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("THOTBOT_DATABASE_URL", database_url)


def _use(services: Services, key: KeyRecord, *agents: tuple[str | None, int]) -> None:
    services.usage.write(
        UsageBatch(
            days=[DayCount(key.id, T0.date(), sum(n for _, n in agents))],
            agents=[AgentCount(key.id, ua, T0, T0 + timedelta(minutes=n), n) for ua, n in agents],
        )
    )


@pytest.fixture
def keys(services: Services) -> dict[str, KeyRecord]:
    acme, solo = make_user(services, "ops@acme.example"), make_user(services, "solo@example.com")
    _, sync = make_api_key(services, acme, name="sync")
    _, scripts = make_api_key(services, acme, name="scripts")
    _, laptop = make_api_key(services, solo, name="laptop")
    _use(services, sync, ("acme-sync/2.3.1 (ops@acme.example)", 40), ("acme-sync/2.2.0", 5))
    _use(services, scripts, ("curl/8.5.0", 7), (None, 3))
    _use(services, laptop, ("python-requests/2.32.3", 2))
    return {"sync": sync, "scripts": scripts, "laptop": laptop}


def test_integrations_json(
    keys: dict[str, KeyRecord], services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["integrations", "--json"]) == 0

    report = json.loads(capsys.readouterr().out)
    acme, solo = report["accounts"]
    assert (acme["email"], acme["requests"], solo["email"], solo["requests"]) == (
        "ops@acme.example",
        55,
        "solo@example.com",
        2,
    )
    sync, scripts = acme["keys"]
    assert (sync["id"], sync["name"], sync["hint"], sync["requests"]) == (
        keys["sync"].id,
        "sync",
        keys["sync"].hint,
        45,
    )
    assert sync["user_agents"][0] == {
        "user_agent": "acme-sync/2.3.1 (ops@acme.example)",
        "app": "acme-sync",
        "version": "2.3.1",
        "contact": "ops@acme.example",
        "class": "descriptive",
        "first_seen": "2026-05-01T12:00:00Z",
        "last_seen": "2026-05-01T12:40:00Z",
        "requests": 40,
    }
    assert [(a["user_agent"], a["class"]) for a in scripts["user_agents"]] == [
        ("curl/8.5.0", "generic"),
        (None, "missing"),
    ]


def test_integrations_text(keys: dict[str, KeyRecord], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["integrations"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"ops@acme.example ({keys['sync'].account_id}): 55 requests"
    assert out[1].startswith(f"  {keys['sync'].id} 'sync' {keys['sync'].hint} active: 45 requests")
    assert out[2].split() == [
        "REQUESTS",
        "CLASS",
        "APP",
        "VERSION",
        "CONTACT",
        "FIRST",
        "SEEN",
        "LAST",
        "SEEN",
        "USER-AGENT",
    ]
    assert out[3].split()[:5] == ["40", "descriptive", "acme-sync", "2.3.1", "ops@acme.example"]
    assert any(line.split()[:2] == ["3", "missing"] and line.endswith("(none)") for line in out)


def test_generic_lists_keys_to_write_to(
    keys: dict[str, KeyRecord], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["integrations", "--generic", "--json"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert [(k["account_email"], k["id"], k["requests"]) for k in report["keys"]] == [
        ("ops@acme.example", keys["scripts"].id, 10),
        ("solo@example.com", keys["laptop"].id, 2),
    ]


def test_generic_text(keys: dict[str, KeyRecord], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["integrations", "--generic"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["EMAIL", "KEY"]
    assert out[1].split()[:3] == ["ops@acme.example", keys["scripts"].id, "scripts"]
    assert out[1].endswith("curl/8.5.0, (none)")
    assert len(out) == 3


def test_nothing_recorded_yet(services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["integrations"]) == 0

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no usage recorded yet" in captured.err


def test_nothing_recorded_yet_json(services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["integrations", "--generic", "--json"]) == 0

    assert json.loads(capsys.readouterr().out) == {"keys": []}
