"""End to end against a real `thotbot serve`: a key's requests, refused ones included, show within
a few seconds at GET /v1/keys/{key_id}/requests and on its dashboard page, newest first, with their
paths redacted and without their query strings; never another account's."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import bearer, make_api_key, make_user
from tests.live import LiveServer, start_server
from thotbot.config import load_settings
from thotbot.core.dates import utcnow
from thotbot.core.identity import Actor
from thotbot.services import Services, build_services

PASSWORD = "a long enough password"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
UA = "reqlog-tests/1.0 (tests@example.com)"


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[tuple[LiveServer, Services]]:
    settings = {
        "THOTBOT_DATABASE_URL": database_url,
        "THOTBOT_RATE_LIMIT": "100000/minute",
        "THOTBOT_ANON_RATE_LIMIT": "100000/minute",
    }
    server = start_server(tmp_path, settings)
    services = build_services(load_settings(database_url=database_url))
    try:
        yield server, services
    finally:
        server.stop()
        services.engine.dispose()


def _get(server: LiveServer, raw: str, path: str, **extra: Any) -> httpx.Response:
    headers = {**bearer(raw), "User-Agent": UA}
    return httpx.get(server.url + path, headers=headers, timeout=10, **extra)


def _requests(server: LiveServer, raw: str, key_id: str, count: int) -> list[dict[str, Any]]:
    """The key's recent requests once ``count`` of them show (they are written every second or so)."""
    deadline = time.monotonic() + 30
    while True:
        answer = _get(server, raw, f"/v1/keys/{key_id}/requests")
        assert answer.status_code == 200, answer.text
        listed: list[dict[str, Any]] = answer.json()["requests"]
        # The listing calls are requests of the key too: count the others.
        others = [r for r in listed if not (r["path"].endswith(f"/{key_id}/requests") and r["status"] == 200)]
        if len(others) >= count or time.monotonic() > deadline:
            return others
        time.sleep(0.2)


def test_a_keys_requests_show_newest_first_redacted_and_only_to_its_account(
    site: tuple[LiveServer, Services],
) -> None:
    server, services = site
    owner, stranger = make_user(services, "owner@example.com", password=PASSWORD), make_user(services)
    raw, key = make_api_key(services, owner, name="watched")
    raw_other, other_key = make_api_key(services, stranger, name="stranger's")
    leaked, _ = make_api_key(services, owner, name="leaked")
    sent = [
        _get(server, raw, "/v1/version", params={"token": "query-secret"}),
        _get(server, raw, "/v1/keys/key_0000000000000000/requests"),  # 404 not_found
        _get(server, raw, f"/v1/keys/{other_key.id}/requests"),  # another account's: 404 too
        _get(server, raw, f"/v1/keys/{key.id}/requests", params={"limit": "0"}),  # 422
        # A key in the path: refused before any key is read, so in no key's log.
        _get(server, raw, f"/v1/keys/{leaked}/requests"),
        httpx.delete(
            server.url + f"/v1/keys/{leaked}", headers={**bearer(raw), "User-Agent": UA}, timeout=10
        ),
    ]
    assert [r.status_code for r in sent] == [200, 404, 404, 422, 400, 400]
    assert sent[2].json() == {**sent[1].json(), "instance": sent[2].json()["instance"]}
    _get(server, raw_other, "/v1/version")

    listed = _requests(server, raw, key.id, 4)

    # Newest first, each as it was answered.
    assert [(r["method"], r["status"], r["code"]) for r in listed] == [
        ("GET", 422, "validation_error"),
        ("GET", 404, "not_found"),
        ("GET", 404, "not_found"),
        ("GET", 200, None),
    ]
    assert [r["at"] for r in listed] == sorted((r["at"] for r in listed), reverse=True)
    assert listed[-1]["path"] == "/v1/version"
    assert listed[2]["path"] == "/v1/keys/key_0000000000000000/requests"
    assert {r["user_agent"] for r in listed} == {UA}
    assert all(r["duration_ms"] >= 0 for r in listed)
    body = _get(server, raw, f"/v1/keys/{key.id}/requests").text
    for secret in (leaked, leaked[8:], "query-secret", raw, raw_other):
        assert secret not in body
    # Never another account's: its key's requests are its own, and this account cannot see them.
    theirs = _requests(server, raw_other, other_key.id, 1)
    assert [(r["path"], r["status"]) for r in theirs] == [("/v1/version", 200)]
    assert _get(server, raw, f"/v1/keys/{other_key.id}/requests").status_code == 404
    assert _get(server, raw_other, f"/v1/keys/{key.id}/requests").status_code == 404
    limited = _get(server, raw, f"/v1/keys/{key.id}/requests", params={"limit": "2"}).json()["requests"]
    assert len(limited) == 2

    # The dashboard page: the same requests, and the errors grouped by code and endpoint.
    page = _dashboard_page(server, "owner@example.com", key.id)
    for secret in (leaked, leaked[8:], "query-secret", raw):
        assert secret not in page
    assert "GET /v1/keys/{key_id}/requests" in page
    # Two 404s on that endpoint before the listing, a third after it (another account's key): that
    # one is on the page or not yet, as the last flush fell.
    assert re.search(
        r"<code>not_found</code></td>\s*<td><code>GET /v1/keys/\{key_id\}/requests</code></td>"
        r"\s*<td class=\"requests\">[23]</td>",
        page,
    ), page.split("Errors in the last", 1)[1][:3000]
    assert other_key.id not in page.split("Recent requests", 1)[1].split("Errors in the last", 1)[1]
    with httpx.Client(base_url=server.url, timeout=10) as client:
        _sign_in(client, "owner@example.com")
        assert client.get(f"/dashboard/api-keys/{other_key.id}").status_code == 404


def test_refused_keys_are_logged_revoked_and_read_only(site: tuple[LiveServer, Services]) -> None:
    server, services = site
    owner = make_user(services, "owner@example.com", password=PASSWORD)
    raw, key = make_api_key(services, owner, name="full")
    read_only, ro_key = make_api_key(services, owner, name="reader", read_only=True)
    doomed, doomed_key = make_api_key(services, owner, name="doomed")

    refused = httpx.delete(
        server.url + f"/v1/keys/{key.id}", headers={**bearer(read_only), "User-Agent": UA}, timeout=10
    )
    assert refused.status_code == 403
    assert _get(server, doomed, "/v1/version").status_code == 200
    services.key_lifecycle.revoke(owner.id, doomed_key.id, Actor("tests"))
    deadline = time.monotonic() + 30
    while (answer := _get(server, doomed, "/v1/me")).status_code != 401 and time.monotonic() < deadline:
        time.sleep(0.1)  # the server evicts the revoked key from its cache within a second
    assert answer.json()["code"] == "revoked_api_key"

    reader = _requests(server, raw, ro_key.id, 1)
    assert [(r["method"], r["status"], r["code"]) for r in reader] == [("DELETE", 403, "insufficient_scope")]
    # A revoked key's requests still answer to its account, its refusal newest.
    # The refusal is written with the next flush; the 200s before the revocation reached the server
    # may be written first.
    deadline = time.monotonic() + 30
    while (revoked := _requests(server, raw, doomed_key.id, 2))[0]["status"] != 401:
        assert time.monotonic() < deadline, revoked
        time.sleep(0.2)
    assert [(r["path"], r["status"], r["code"]) for r in revoked[:1]] == [("/v1/me", 401, "revoked_api_key")]
    assert revoked[-1]["status"] == 200
    page = _dashboard_page(server, "owner@example.com", doomed_key.id)
    assert "revoked_api_key" in page
    assert doomed not in page


def _sign_in(client: httpx.Client, email: str) -> None:
    page = client.get("/login").text
    match = _CSRF.search(page)
    assert match is not None
    answer = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": match[1]})
    assert answer.status_code == 303, answer.text


def _dashboard_page(server: LiveServer, email: str, key_id: str) -> str:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        _sign_in(client, email)
        page = client.get(f"/dashboard/api-keys/{key_id}?requests=all")
        assert page.status_code == 200
        return html.unescape(page.text)


def test_two_instances_write_one_log(database_url: str, tmp_path: Path) -> None:
    """Two servers on one database: each writes its own requests; either lists them all, in order."""
    settings = {
        "THOTBOT_DATABASE_URL": database_url,
        "THOTBOT_RATE_LIMIT": "100000/minute",
        "THOTBOT_WORKERS": "2",
    }
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = start_server(tmp_path / "a", settings)
    second = start_server(tmp_path / "b", settings)
    services = build_services(load_settings(database_url=database_url))
    try:
        raw, key = make_api_key(services, make_user(services))
        for i in range(6):
            server = (first, second)[i % 2]
            assert _get(server, raw, f"/v1/nothing/{i}").status_code == 404

        listed = _requests(first, raw, key.id, 6)

        assert [r["path"] for r in listed] == [f"/v1/nothing/{i}" for i in reversed(range(6))]
        assert _requests(second, raw, key.id, 6) == listed
        [group] = services.request_log.errors(key.id, utcnow() - timedelta(hours=1))
        assert (group.endpoint, group.code, group.requests) == ("GET (other)", "not_found", 6)
    finally:
        first.stop()
        second.stop()
        services.engine.dispose()


def test_a_revoked_key_kept_in_use_lands_on_the_outreach_list(
    site: tuple[LiveServer, Services], database_url: str
) -> None:
    """The whole path: requests with a revoked key reach a live server, its request log writes them,
    and `thotbot integrations --failing --json` names the key, its owner and the program's contact."""
    server, services = site
    owner = make_user(services, "ops@acme.example")
    raw, key = make_api_key(services, owner, name="nightly-sync")
    _, quiet = make_api_key(services, owner, name="quiet")
    services.key_lifecycle.revoke(owner.id, key.id, Actor.operator())
    agent = {"User-Agent": "nightly-sync/3.1 (sync-team@acme.example)"}
    deadline = time.monotonic() + 5
    while True:  # the running server refuses it within a second of the revocation
        refused = httpx.get(server.url + "/v1/version", headers={**bearer(raw), **agent}, timeout=10)
        if refused.status_code == 401 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for _ in range(4):
        refused = httpx.get(server.url + "/v1/version", headers={**bearer(raw), **agent}, timeout=10)
        assert refused.json()["code"] == "revoked_api_key"

    def failing() -> list[dict[str, Any]]:
        done = subprocess.run(
            [sys.executable, "-m", "thotbot", "integrations", "--failing", "--json"],
            env={**os.environ, "THOTBOT_DATABASE_URL": database_url},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        listed: list[dict[str, Any]] = json.loads(done.stdout)["keys"]
        return listed

    deadline = time.monotonic() + 30
    while not (listed := failing()) and time.monotonic() < deadline:
        time.sleep(0.5)

    [entry] = listed
    assert (entry["key_id"], entry["name"], entry["state"]) == (key.id, "nightly-sync", "revoked")
    assert entry["account_email"] == "ops@acme.example"
    assert entry["failed"] >= 4
    assert entry["top_codes"][0]["code"] == "revoked_api_key"
    assert [(a["app"], a["version"], a["contact"]) for a in entry["user_agents"]] == [
        ("nightly-sync", "3.1", "sync-team@acme.example")
    ]
    assert quiet.id not in json.dumps(listed)
    assert raw not in json.dumps(listed)
