"""End to end: a real `thotbot serve` on a loopback port, driven by HTTP, raw sockets and the CLI."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live import LiveServer
from tests.livecli import EMAIL, Deployment, deploy
from tests.services import missing_service
from thotbot import __version__
from thotbot.core import keys


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One server for the tests that neither stop it nor look through everything it wrote."""
    deployment = deploy(tmp_path_factory.mktemp("server"), {})
    yield deployment
    deployment.stop()


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Deployment]:
    """A server of this test's own: the test stops it, or scans every file it wrote."""
    deployment = deploy(tmp_path, {})
    yield deployment
    if deployment.process.poll() is None:
        deployment.stop()


def _get(server: LiveServer, path: str, raw: str | None = None, **headers: str) -> httpx.Response:
    if raw is not None:
        headers["Authorization"] = f"Bearer {raw}"
    return httpx.get(server.url + path, headers=headers, timeout=10)


def _post_key(server: LiveServer, raw: str, body: dict[str, str]) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/keys", headers={"Authorization": f"Bearer {raw}"}, json=body, timeout=10
    )


def _refused_within(server: LiveServer, raw: str, seconds: float) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        response = _get(server, "/v1/version", raw)
        if response.status_code != 200 or time.monotonic() >= deadline:
            return response
        time.sleep(0.05)


def _raw_request(server: LiveServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def test_the_documentations_examples_work(server: Deployment) -> None:
    curl, node = shutil.which("curl"), shutil.which("node")
    if curl is None or node is None:
        missing_service("curl and node are needed to run the documentation's own examples")
    raw = server.create_key("docs")

    # docs/authentication.txt, "cURL Example", against this server.
    done = subprocess.run(
        [curl, "-sS", "-H", f"Authorization: Bearer {raw}", f"{server.url}/v1/version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"version": __version__, "api": "v1"}

    # docs/authentication.txt, "JavaScript", run by Node's own fetch.
    script = (
        "const response = await fetch(process.argv[1] + '/v1/version', {"
        "  headers: {'Authorization': 'Bearer ' + process.env.KEY, 'User-Agent': 'my-app/1.0.0'}"
        "});"
        "const data = await response.json();"
        "console.log(JSON.stringify({status: response.status, data}));"
    )
    done = subprocess.run(
        [node, "--input-type=module", "-e", script, server.url],
        env={**server.env, "KEY": raw},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"status": 200, "data": {"version": __version__, "api": "v1"}}


def test_a_revocation_by_the_cli_is_honoured_within_a_second(server: Deployment) -> None:
    raw = server.create_key("to revoke")
    assert _get(server, "/v1/version", raw).status_code == 200  # cached by the server now

    # The command as installed, in a process of its own, as an operator's shell runs it.
    revoked = server.cli("keys", "revoke", server.key_id(raw), process=True)
    assert revoked.returncode == 0, revoked.stderr
    response = _refused_within(server, raw, 1.0)

    assert response.status_code == 401
    assert response.json()["code"] == "revoked_api_key"


def test_a_grant_by_the_cli_is_honoured_within_a_second(server: Deployment) -> None:
    raw = server.create_key("to grant")
    headers = {"Authorization": f"Bearer {raw}"}
    assert httpx.post(server.url + "/v1/keys", headers=headers, json={"name": "x"}).status_code == 403

    granted = server.cli("keys", "grant", server.key_id(raw), "account:security")
    assert granted.returncode == 0, granted.stderr
    deadline = time.monotonic() + 1.0
    while True:
        response = httpx.post(server.url + "/v1/keys", headers=headers, json={"name": "minted"})
        if response.status_code != 403 or time.monotonic() >= deadline:
            break
        time.sleep(0.05)

    assert response.status_code == 201, response.text


REQUEST_HEAD = b"GET /v1/version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
HOSTILE = [
    pytest.param(b"Authorization: Bearer thot_ak_" + b"a" * 10_000, 401, "malformed_api_key", id="10kB"),
    # Over the 16 KiB a header line may hold: refused before the application sees it.
    pytest.param(
        b"Authorization: Bearer thot_ak_" + b"a" * 200_000, 431, "request_header_too_large", id="200kB"
    ),
    pytest.param(
        b"Authorization: Bearer thot_ak_" + b"\xff\xfe" * 48, 401, "malformed_api_key", id="non-utf8"
    ),
    pytest.param(b"Authorization: \xc3\x28\xa0\xa1", 401, "unsupported_auth_scheme", id="bad-utf8-scheme"),
    pytest.param(b"Authorization: Bearer thot_ak_\x01\x02" + b"a" * 94, 400, "bad_request", id="control"),
    pytest.param(b"Authorization: Bearer thot_ak_\x00" + b"a" * 95, 400, "bad_request", id="nul"),
    pytest.param(b"Authorization: Bearer \x1b[31mthot_ak_", 400, "bad_request", id="escape"),
    pytest.param(b"Authorization: Bearer thot_ak_\rabc", 400, "bad_request", id="bare-cr"),
    pytest.param(b"Authorization: Bearer thot_ak_\x7f" + b"a" * 95, 400, "bad_request", id="del"),
]


def test_hostile_raw_requests_get_a_problem_and_the_server_keeps_serving(server: Deployment) -> None:
    raw = server.create_key("survivor")

    for case in HOSTILE:
        header, status, code = case.values
        assert isinstance(header, bytes)
        request = REQUEST_HEAD + header + b"\r\n\r\n"

        got, headers, body = _raw_request(server, request)

        assert (case.id, got) == (case.id, status)
        assert headers["content-type"] == "application/problem+json", case.id
        assert headers["cache-control"] == "no-store", case.id
        problem = json.loads(body)
        assert (case.id, problem["code"], problem["status"]) == (case.id, code, status)
        if len(header) > 40:
            assert header[30:60] not in body, case.id  # nothing of the token is echoed
        # And the server keeps serving.
        assert _get(server, "/v1/version", raw).status_code == 200, case.id
    assert _get(server, "/healthz").status_code == 200
    assert "Traceback" not in server.log_text()


def test_a_request_line_that_is_not_http_gets_a_problem(server: Deployment) -> None:
    got, _, body = _raw_request(server, b"GET /v1/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")

    assert got == 400
    assert json.loads(body)["code"] == "bad_request"
    assert _get(server, "/healthz").status_code == 200


def test_sigterm_flushes_last_used(instance: Deployment) -> None:
    raw = instance.create_key("used once")
    assert _get(instance, "/v1/me", raw, **{"User-Agent": "acme-sync/2.3.1"}).status_code == 200

    assert instance.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down

    listed = json.loads(instance.cli("keys", "list", "--user", EMAIL, "--json").stdout)["keys"]
    [key] = listed
    assert key["last_used_at"] is not None
    assert key["last_user_agent"] == "acme-sync/2.3.1"
    assert "Application shutdown complete" in instance.log_text()


def _scan(instance: Deployment, secrets: list[str]) -> list[str]:
    """Every file under the data directory, and the server's log: where any secret appears."""
    found = []
    files = [p for p in instance.data.rglob("*") if p.is_file()]
    assert any(p.name == "thotbot.db" for p in files)
    for path in [*files, instance.log]:
        content = path.read_bytes()
        for secret in secrets:
            body = secret[len("thot_ak_") :]
            needles = (secret.encode(), body.encode(), body.upper().encode(), body[:48].encode())
            if any(needle in content for needle in needles):
                found.append(f"{path.name}: {secret[:12]}…")
    return found


def test_no_raw_key_in_any_file_the_system_writes(instance: Deployment) -> None:
    plain = instance.create_key("plain")
    granted = instance.create_key("granted")
    read_only = instance.create_key("read only", "--read-only", "--expires-at", "2040-01-01")
    leaked = instance.create_key("leaked")
    assert instance.cli("keys", "grant", instance.key_id(granted), "account:security").returncode == 0
    # The server's poller sees the grant within a second: an empty body is 422 then (403 before).
    deadline = time.monotonic() + 10
    while _post_key(instance, granted, {}).status_code == 403:
        assert time.monotonic() < deadline, "the grant was not honoured"
        time.sleep(0.05)

    # Use them, well and badly.
    ua = {"User-Agent": "scanner-test/1.0 (ops@example.com)"}
    assert _get(instance, "/v1/me", plain, **ua).status_code == 200
    assert _get(instance, "/v1/keys", read_only, **ua).status_code == 200
    # A key pasted into a User-Agent is stored redacted, like everywhere else.
    assert (
        _get(instance, "/v1/version", plain, **{"User-Agent": f"leaky/1.0 (key {plain})"}).status_code == 200
    )
    assert _get(instance, f"/v1/version?api_key={plain}", plain).status_code == 400
    encoded = "".join(f"%{b:02X}" for b in plain.encode())
    assert _get(instance, f"/v1/version?token={encoded}").status_code == 400
    assert _get(instance, f"/v1/keys/{plain}", plain).status_code == 400
    assert _get(instance, "/v1/version", plain.upper()).status_code == 401
    assert _get(instance, "/v1/version", plain[:-1]).status_code == 401
    minted = httpx.post(
        instance.url + "/v1/keys", headers={"Authorization": f"Bearer {granted}"}, json={"name": "minted"}
    )
    assert minted.status_code == 201, minted.text
    new = minted.json()["key"]
    assert _get(instance, "/v1/me", new).status_code == 200
    assert (
        httpx.delete(
            f"{instance.url}/v1/keys/{minted.json()['id']}", headers={"Authorization": f"Bearer {new}"}
        ).status_code
        == 204
    )
    revoke = httpx.post(instance.url + "/v1/keys/revoke-leaked", json={"keys": [leaked, keys.generate()]})
    assert revoke.status_code == 202
    assert _get(instance, "/v1/version", leaked).json()["code"] == "revoked_api_key"
    listed = instance.cli("keys", "list", "--user", EMAIL, "--json").stdout
    secrets = [plain, granted, read_only, leaked, new]
    assert all(secret not in listed for secret in secrets)
    time.sleep(2.5)  # a periodic flush writes the usage: the scan covers it too

    found_running = _scan(instance, secrets)
    assert instance.stop() in (0, -signal.SIGTERM)
    found_stopped = _scan(instance, secrets)

    assert found_running == []
    assert found_stopped == []
    # The scan can fail: a key written anywhere under the data directory is found.
    (instance.data / "canary").write_text(f"oops {plain}\n")
    assert _scan(instance, secrets) == ["canary: " + plain[:12] + "…"]
    # The scan looked at real data: the hints and the access log are there.
    assert keys.hint(plain).encode() in (instance.data / "thotbot.db").read_bytes() + b"".join(
        p.read_bytes() for p in instance.data.glob("thotbot.db-*")
    )
    log = instance.log_text()
    assert '"GET /v1/me" 200' in log
    assert '"GET /v1/version" 400' in log
    assert "/v1/[redacted]" in log
