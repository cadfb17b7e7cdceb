"""The served description through the tools API users point at it: Redocly's linter and
openapi-python-client, whose generated client must read what the API really answers.

Redocly's CLI comes from tests/node (installed by `make test` with `npm ci` from its lock file),
openapi-python-client from requirements.lock; neither fetches anything while the tests run
(Redocly's telemetry and update check are turned off).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from tests.factories import bearer, make_api_key, make_user
from tests.services import missing_service
from thotbot.app import create_app
from thotbot.config import load_settings
from thotbot.services import Services, build_memory_services

NODE_TOOLS = Path(__file__).resolve().parent / "node"
REDOCLY = NODE_TOOLS / "node_modules" / "@redocly" / "cli" / "bin" / "cli.js"
NODE = shutil.which("node")
GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "thotbot_generated_client"


@pytest.fixture(scope="module")
def served() -> str:
    """The description as the server serves it (the same whatever the store)."""
    settings = load_settings()
    with TestClient(create_app(settings, build_memory_services(settings))) as client:
        answer = client.get("/openapi/api.yaml")
    assert answer.status_code == 200
    return answer.text


@pytest.fixture
def description(served: str, tmp_path: Path) -> Path:
    """The served description, in a file."""
    path = tmp_path / "api.yaml"
    path.write_text(served, encoding="utf-8")
    return path


def _lint(path: Path) -> dict[str, Any]:
    if NODE is None or not REDOCLY.is_file():
        missing_service("Redocly's CLI is not installed: npm ci --prefix tests/node (make test does)")
    env = {**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"}
    done = subprocess.run(
        [NODE, str(REDOCLY), "lint", str(path), "--format=json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_redocly_finds_nothing_in_the_served_description(description: Path) -> None:
    report = _lint(description)

    assert report["totals"] == {"errors": 0, "warnings": 0, "ignored": 0}, report["problems"]


def test_redocly_would_find_a_broken_reference(description: Path) -> None:
    """The check above can fail: the same description with one reference broken is an error."""
    document = yaml.safe_load(description.read_text(encoding="utf-8"))
    reference = document["components"]["schemas"]["Me"]["properties"]["key"]
    assert reference == {"$ref": "#/components/schemas/Key"}
    reference["$ref"] = "#/components/schemas/Kee"
    description.write_text(yaml.safe_dump(document), encoding="utf-8")

    report = _lint(description)

    assert report["totals"]["errors"] >= 1
    assert "no-unresolved-refs" in {problem["ruleId"] for problem in report["problems"]}


@pytest.fixture
def generated(description: Path, tmp_path: Path) -> Iterator[Any]:
    """The client openapi-python-client generates from the served description, imported."""
    done = subprocess.run(
        [
            *(str(GENERATOR), "generate", "--path", str(description)),
            *("--output-path", str(tmp_path / PACKAGE), "--meta", "none"),
        ],
        capture_output=True,
        text=True,
        # Its post-generation hooks run ruff, from this environment.
        env={**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(f"{PACKAGE}.models")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_the_generated_client_reads_what_the_api_answers(
    generated: Any, client: TestClient, services: Services
) -> None:
    account = make_user(services)
    raw, caller = make_api_key(services, account, name="caller")
    _, limited = make_api_key(services, account, name="office", read_only=True)
    services.keys.set_allowed_networks(limited.id, ("192.0.2.0/24", "2001:db8::/32"))
    services.keys.set_rate_limit(limited.id, "100/minute")

    me = client.get("/v1/me", headers=bearer(raw))
    listed = client.get("/v1/keys", headers=bearer(raw))
    assert (me.status_code, listed.status_code) == (200, 200)

    read_me = generated.Me.from_dict(me.json())
    read_keys = generated.KeyList.from_dict(listed.json())
    assert read_me.key.id == caller.id
    assert read_me.account.email == account.email
    office = next(k for k in read_keys.keys if k.id == limited.id)
    assert office.allowed_networks == ["192.0.2.0/24", "2001:db8::/32"]
    assert office.rate_limit == "100/minute"
    assert office.read_only is True
    # Each key, read by the generated model and written back, is the JSON the API sent (its
    # times as the same instants: the model writes +00:00 where the API writes Z).
    assert [_instants(k.to_dict()) for k in read_keys.keys] == [_instants(k) for k in listed.json()["keys"]]


def _instants(key: dict[str, Any]) -> dict[str, Any]:
    return {
        name: datetime.fromisoformat(value) if name.endswith("_at") and value else value
        for name, value in key.items()
    }
