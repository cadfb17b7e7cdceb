"""`thotbot integrations --failing`: text and JSON, the --since window, a bad --since."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.factories import make_api_key, make_user
from tests.request_hours import add_hour
from thotbot.cli import main
from thotbot.core.dates import utcnow
from thotbot.services import Services
from thotbot.storage import KeyRecord


@pytest.fixture(autouse=True)
def _database(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("THOTBOT_DATABASE_URL", database_url)


@pytest.fixture
def keys(services: Services) -> dict[str, KeyRecord]:
    hour = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    acme = make_user(services, "ops@acme.example")
    _, nightly = make_api_key(services, acme, name="nightly-sync")
    nightly = services.keys.revoke(nightly.id).record
    _, busy = make_api_key(services, acme, name="busy")
    _, fine = make_api_key(services, acme, name="fine")
    _, old = make_api_key(services, acme, name="old")
    add_hour(
        services,
        nightly.id,
        hour,
        3,
        code="revoked_api_key",
        user_agent="nightly-sync/3.1 (ops@acme.example)",
    )
    add_hour(services, busy.id, hour, 20, user_agent="curl/8.5.0")
    add_hour(services, busy.id, hour, 80, code="rate_limited", user_agent="curl/8.5.0")
    add_hour(services, fine.id, hour, 90)
    add_hour(services, fine.id, hour, 10, code="not_found")
    add_hour(services, old.id, hour - timedelta(days=3), 50, code="rate_limited")
    return {"nightly": nightly, "busy": busy, "fine": fine, "old": old}


def test_failing_json(keys: dict[str, KeyRecord], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["integrations", "--failing", "--json"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert [k["key_id"] for k in report["keys"]] == [keys["busy"].id, keys["nightly"].id]
    busy, nightly = report["keys"]
    assert (busy["requests"], busy["failed"], busy["failed_share"], busy["state"]) == (100, 80, 0.8, "active")
    assert busy["top_codes"] == [{"code": "rate_limited", "requests": 80}]
    assert (nightly["state"], nightly["account_email"], nightly["name"]) == (
        "revoked",
        "ops@acme.example",
        "nightly-sync",
    )
    assert nightly["state_at"] is not None
    [agent] = nightly["user_agents"]
    assert (agent["app"], agent["version"], agent["contact"]) == ("nightly-sync", "3.1", "ops@acme.example")


def test_failing_text(keys: dict[str, KeyRecord], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["integrations", "--failing"]) == 0

    out = capsys.readouterr().out
    assert out.index(keys["busy"].id) < out.index(keys["nightly"].id)
    assert "80 of 100 requests failed (80%)" in out
    assert "errors: rate_limited 80" in out
    assert (
        "user-agent: nightly-sync/3.1 (ops@acme.example)  [nightly-sync 3.1; ops@acme.example; 3 requests]"
        in out
    )
    assert keys["fine"].id not in out
    assert keys["old"].id not in out


def test_since_widens_the_window(keys: dict[str, KeyRecord], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["integrations", "--failing", "--since", "7d", "--json"]) == 0

    listed = [k["key_id"] for k in json.loads(capsys.readouterr().out)["keys"]]
    assert listed == [keys["busy"].id, keys["old"].id, keys["nightly"].id]


def test_since_narrows_the_window(keys: dict[str, KeyRecord], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["integrations", "--failing", "--since", "30m"]) == 0

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no key mostly failed since" in captured.err


@pytest.mark.parametrize("since", ["yesterday", "0h", "24", "-3d", "9999d"])
def test_bad_since(since: str, services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["integrations", "--failing", f"--since={since}"]) == 1

    err = capsys.readouterr().err.strip()
    assert err.startswith("thotbot: error: --since")
    assert len(err.splitlines()) == 1


def test_since_without_failing(services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["integrations", "--since", "7d"]) == 1

    assert capsys.readouterr().err.strip() == "thotbot: error: --since goes with --failing"
