"""`thotbot api version|me|keys [--json]` against a real server: the key from THOTBOT_API_KEY only, the
server's refusal as one line and exit status 1, its own User-Agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.factories import bearer, fake_key, make_api_key
from tests.fakeapi import fake_api, ok
from tests.livecli import EMAIL, THOTBOT, Deployment, deploy
from tests.services import free_port
from thotbot import __version__
from thotbot.cli import main
from thotbot.config import load_settings
from thotbot.services import build_services


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = deploy(tmp_path_factory.mktemp("api-cli"), {})
    yield deployment
    deployment.stop()


def _new_key(server: Deployment, name: str, *, read_only: bool = False) -> str:
    services = build_services(load_settings(database_url=server.env["THOTBOT_DATABASE_URL"]))
    try:
        raw, _ = make_api_key(services, services.users.get_by_email(EMAIL), name=name, read_only=read_only)
    finally:
        services.engine.dispose()
    return raw


@pytest.fixture
def key(server: Deployment, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh key in THOTBOT_API_KEY, and the server in THOTBOT_API_URL, as a user would set them."""
    raw = _new_key(server, "cli key")
    monkeypatch.setenv("THOTBOT_API_KEY", raw)
    monkeypatch.setenv("THOTBOT_API_URL", server.url)
    return raw


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("thotbot: error: ")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_version(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["api", "version"]) == 0
    assert capsys.readouterr().out == f"Thotbot {__version__}, API v1\n"

    assert main(["api", "version", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"version": __version__, "api": "v1"}


def test_me(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["api", "me"]) == 0
    out = capsys.readouterr().out
    assert f"account:   {EMAIL} (id " in out
    assert "key:       cli key (id " in out
    assert f"{key[:12]}…{key[-4:]}" in out
    assert "access:    full\n" in out
    assert "state:     active\n" in out
    assert "expires:   never\n" in out

    assert main(["api", "me", "--json"]) == 0
    me = json.loads(capsys.readouterr().out)
    assert me["account"]["email"] == EMAIL
    assert me["key"]["name"] == "cli key"
    assert key not in json.dumps(me)


def test_keys(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["api", "keys"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "NAME", "HINT", "CREATED", "LAST", "USED", "EXPIRES", "STATE", "ACCESS"]
    assert any(f"{key[:12]}…{key[-4:]}" in row and "cli key" in row for row in rows)

    assert main(["api", "keys", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["keys"]
    assert any(k["hint"] == f"{key[:12]}…{key[-4:]}" for k in listed)


def test_a_revoked_key_prints_the_servers_message(
    key: str, server: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["api", "me", "--json"]) == 0
    key_id = json.loads(capsys.readouterr().out)["key"]["id"]
    # Revoked by itself, through the API: this server forgets it at once.
    revoked = httpx.delete(f"{server.url}/v1/keys/{key_id}", headers=bearer(key), timeout=10)
    assert revoked.status_code == 204

    assert main(["api", "version"]) == 1
    error = _one_line_error(capsys)
    assert error.startswith("thotbot: error: revoked_api_key: This API key has been revoked.")
    assert key not in error


def test_an_invalid_key_and_no_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with fake_api() as api:
        api.script(ok({"version": "9.9.9", "api": "v1"}))
        assert main(["api", "version", "--base-url", api.url]) == 1
        assert "set THOTBOT_API_KEY" in _one_line_error(capsys)
        assert api.seen == []

        monkeypatch.setenv("THOTBOT_API_KEY", fake_key())
        assert main(["api", "version", "--base-url", api.url]) == 0
        assert api.seen[0].headers["User-Agent"] == f"thotbot-cli/{__version__} thotbot-python/{__version__}"


def test_an_unreachable_server(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("THOTBOT_API_KEY", fake_key())
    monkeypatch.setenv("THOTBOT_API_URL", "http://127.0.0.1:9")  # --base-url wins over it
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr("thotbot.client.Client._sleep", staticmethod(lambda seconds: None))

    assert main(["api", "version", "--base-url", url]) == 1
    error = _one_line_error(capsys)
    assert f"GET {url}/v1/version: ConnectError" in error


def test_the_command_as_installed(server: Deployment) -> None:
    """The console script, in its own process: the key only in the environment, never in argv."""
    raw = _new_key(server, "script key")
    env = {**server.env, "THOTBOT_API_KEY": raw, "THOTBOT_API_URL": server.url}
    done = subprocess.run(
        [THOTBOT, "api", "version"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"Thotbot {__version__}, API v1\n"

    wrong = {**env, "THOTBOT_API_KEY": fake_key("9")}
    done = subprocess.run(
        [THOTBOT, "api", "me"], env=wrong, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("thotbot: error: invalid_api_key: ")
    assert "Traceback" not in done.stderr


def test_it_loads_none_of_the_servers_modules() -> None:
    """`thotbot api` starts with the client and httpx alone: no database driver, framework or services."""
    script = (
        "import sys\n"
        "from thotbot.__main__ import main\n"
        "assert main(['api', 'version']) == 1\n"  # no THOTBOT_API_KEY: it stops before any request
        "print(' '.join(sorted(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("THOTBOT_")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "thotbot.client" in loaded
    server = {"sqlalchemy", "starlette", "uvicorn", "thotbot.cli", "thotbot.services", "thotbot.config"}
    assert not server & loaded
