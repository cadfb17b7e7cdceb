"""The operator's per-key IP allowlists and rate limits (`thotbot keys allow`, `keys limit`), against
real servers: set by the CLI in another process, honoured by the running server within a second."""

from __future__ import annotations

import http.client
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.livecli import EMAIL, Deployment, deploy
from tests.services import redis_url
from tests.test_ratelimit_workers import _worker_holding
from thotbot.config import load_settings
from thotbot.services import build_services

#: The server trusts this address as its reverse proxy; 127.0.0.1 stays an ordinary, untrusted peer.
PROXY = "127.0.0.2"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    server = deploy(tmp_path_factory.mktemp("allowlists"), {"THOTBOT_TRUSTED_PROXIES": PROXY})
    yield server
    server.stop()


def _client(local_address: str = "127.0.0.1") -> httpx.Client:
    """Requests sent from this loopback address (Linux routes all of 127.0.0.0/8 to lo)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=local_address), timeout=10)


def _get(
    server: Deployment, raw: str, *, via: str = "127.0.0.1", forwarded: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {raw}", "User-Agent": "policy-test/1.0 (ops@example.com)"}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    with _client(via) as client:
        return client.get(server.url + "/v1/version", headers=headers)


def _within_a_second(
    request: Callable[[], httpx.Response], done: Callable[[httpx.Response], bool]
) -> httpx.Response:
    """The first response ``done`` accepts, asking until a second has passed (then the last one)."""
    deadline = time.monotonic() + 1.0
    while True:
        response = request()
        if done(response) or time.monotonic() >= deadline:
            return response
        time.sleep(0.05)


def _code(response: httpx.Response) -> str | None:
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        code: str = response.json()["code"]
        return code
    return None


def _cli_ok(server: Deployment, *args: str) -> str:
    done = server.cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stderr


def _cli_error(server: Deployment, *args: str, process: bool = False) -> str:
    done = server.cli(*args, process=process)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("thotbot: error: ")
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def _events(server: Deployment) -> list[tuple[str, str, str]]:
    services = build_services(load_settings(database_url=server.env["THOTBOT_DATABASE_URL"]))
    try:
        account = services.users.get_by_email(EMAIL)
        return [(e.action, e.actor, e.detail) for e in services.security_log.list_for_account(account.id)]
    finally:
        services.engine.dispose()


class TestAllowlist:
    def test_outside_the_list_is_refused_within_a_second_inside_works(self, site: Deployment) -> None:
        raw = site.create_key("office only")
        key_id = site.key_id(raw)
        assert _get(site, raw).status_code == 200  # cached by the server now

        said = _cli_ok(site, "keys", "allow", key_id, "192.0.2.0/24", "198.51.100.7")
        refused = _within_a_second(lambda: _get(site, raw), lambda r: r.status_code == 403)

        assert "may now be used from 192.0.2.0/24, 198.51.100.7/32" in said
        assert refused.status_code == 403
        problem = refused.json()
        assert problem["code"] == "ip_not_allowed"
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "came from 127.0.0.1" in problem["detail"]
        assert "key's page in the dashboard" in problem["detail"]
        assert raw not in refused.text
        # Counted against the client's address, as other refusals are.
        assert "ratelimit-limit" in refused.headers

        # Inside the list: an address the trusted proxy names.
        assert _get(site, raw, via=PROXY, forwarded="192.0.2.77").status_code == 200
        assert _get(site, raw, via=PROXY, forwarded="198.51.100.7").status_code == 200
        outside = _get(site, raw, via=PROXY, forwarded="198.51.100.8")
        assert (outside.status_code, _code(outside)) == (403, "ip_not_allowed")
        assert "came from 198.51.100.8" in outside.json()["detail"]

        # The operator's change is in the account's security log, once.
        [(_, actor, detail)] = [e for e in _events(site) if e[0] == "key.networks_changed"]
        assert actor == "operator"
        assert detail.endswith("may now be used from 192.0.2.0/24, 198.51.100.7/32")

        # The list, as the operator and any key of the account read it: `keys list --json`, /v1/keys.
        listed = json.loads(site.cli("keys", "list", "--user", EMAIL, "--json").stdout)["keys"]
        assert [k["allowed_networks"] for k in listed if k["id"] == key_id] == [LISTED]
        reader = site.create_key("reader")
        assert _networks(site, reader) == {key_id: LISTED, site.key_id(reader): []}

        _cli_ok(site, "keys", "allow", key_id, "127.0.0.1")
        allowed = _within_a_second(lambda: _get(site, raw), lambda r: r.status_code == 200)
        assert allowed.status_code == 200

        said = _cli_ok(site, "keys", "allow", key_id, "--any")
        assert "may now be used from any address" in said
        anywhere = _within_a_second(
            lambda: _get(site, raw, via=PROXY, forwarded="203.0.113.9"), lambda r: r.status_code == 200
        )
        assert anywhere.status_code == 200
        assert _networks(site, reader)[key_id] == []

    def test_a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(self, site: Deployment) -> None:
        raw = site.create_key("spoofed")
        _cli_ok(site, "keys", "allow", site.key_id(raw), "192.0.2.0/24")

        # 127.0.0.1 is not a trusted proxy: its X-Forwarded-For is ignored, its own address checked.
        spoofed = _get(site, raw, forwarded="192.0.2.1")
        assert (spoofed.status_code, _code(spoofed)) == (403, "ip_not_allowed")
        assert "came from 127.0.0.1" in spoofed.json()["detail"]
        # The proxy itself, naming no client, is checked as what it is: outside.
        bare = _get(site, raw, via=PROXY)
        assert (bare.status_code, _code(bare)) == (403, "ip_not_allowed")
        # A chain: the trusted proxy's right-most untrusted entry is the client, not what came before.
        chained = _get(site, raw, via=PROXY, forwarded="192.0.2.1, 203.0.113.5")
        assert (chained.status_code, _code(chained)) == (403, "ip_not_allowed")
        assert "came from 203.0.113.5" in chained.json()["detail"]
        assert _get(site, raw, via=PROXY, forwarded="203.0.113.5, 192.0.2.1").status_code == 200

    def test_a_refused_restricted_call_is_in_the_security_log(self, site: Deployment) -> None:
        raw = site.create_key("restricted")
        key_id = site.key_id(raw)
        _cli_ok(site, "keys", "grant", key_id, "account:security")
        _cli_ok(site, "keys", "allow", key_id, "192.0.2.0/24")
        headers = {"Authorization": f"Bearer {raw}"}

        with _client() as client:
            response = client.post(site.url + "/v1/keys", headers=headers, json={"name": "minted"})

        assert (response.status_code, _code(response)) == (403, "ip_not_allowed")
        refused = [e for e in _events(site) if e[0] == "restricted.refused"]
        assert any("POST /v1/keys refused: ip_not_allowed" in detail for _, _, detail in refused)

    @pytest.mark.parametrize(
        ("entries", "says"),
        [
            (["10.0.0.5/24"], "10.0.0.5/24 has host bits set: did you mean 10.0.0.0/24?"),
            (["192.0.2.0/24", "example.com"], "example.com is not an IP address or CIDR network"),
            ([], "or --any"),
            (["192.0.2.0/24", "--any"], "or --any"),
        ],
    )
    def test_bad_input_is_one_line_and_changes_nothing(
        self, site: Deployment, entries: list[str], says: str
    ) -> None:
        raw = site.create_key("bad input")
        key_id = site.key_id(raw)

        assert says in _cli_error(site, "keys", "allow", key_id, *entries)
        assert _get(site, raw).status_code == 200

    def test_an_unknown_key_is_one_line(self, site: Deployment) -> None:
        # The command as installed, in a process of its own: its exit status and whole stderr.
        assert "No API key with id 'key_0000000000000000'" in _cli_error(
            site, "keys", "allow", "key_0000000000000000", "192.0.2.0/24", process=True
        )
        assert "No API key" in _cli_error(site, "keys", "limit", "key_0000000000000000", "3/hour")


#: What `keys allow KEY 192.0.2.0/24 198.51.100.7` stores and the API shows: a single address as a /32.
LISTED = ["192.0.2.0/24", "198.51.100.7/32"]


def _networks(site: Deployment, raw: str) -> dict[str, list[str]]:
    """Each key of the account and its IP allowlist, as ``GET /v1/keys`` with key ``raw`` shows them."""
    with _client() as client:
        listed = client.get(site.url + "/v1/keys", headers={"Authorization": f"Bearer {raw}"})
    assert listed.status_code == 200
    keys = listed.json()["keys"]
    return {k["id"]: k["allowed_networks"] for k in keys if k["name"] in ("office only", "reader")}


def test_ipv6_clients_are_checked_too(tmp_path: Path) -> None:
    server = deploy(tmp_path, {}, host="::1")
    try:
        raw = server.create_key("v6")
        key_id = server.key_id(raw)
        headers = {"Authorization": f"Bearer {raw}"}
        assert httpx.get(server.url + "/v1/version", headers=headers).status_code == 200

        _cli_ok(server, "keys", "allow", key_id, "127.0.0.1", "2001:db8::/32")
        refused = _within_a_second(
            lambda: httpx.get(server.url + "/v1/version", headers=headers), lambda r: r.status_code == 403
        )
        assert (refused.status_code, _code(refused)) == (403, "ip_not_allowed")
        assert "came from ::1" in refused.json()["detail"]

        _cli_ok(server, "keys", "allow", key_id, "::1")
        allowed = _within_a_second(
            lambda: httpx.get(server.url + "/v1/version", headers=headers), lambda r: r.status_code == 200
        )
        assert allowed.status_code == 200
    finally:
        server.stop()


def _limited(server: Deployment, raw: str, limit: str) -> list[httpx.Response]:
    """Ask until the server applies ``limit`` to the key (within a second), then until it refuses."""
    first = _within_a_second(lambda: _get(server, raw), lambda r: r.headers.get("ratelimit-limit") == limit)
    assert first.headers["ratelimit-limit"] == limit, "the new limit was not applied within a second"
    responses = [first]
    while responses[-1].status_code != 429 and len(responses) < 20:
        responses.append(_get(server, raw))
    return responses


class TestRateLimit:
    def test_a_limit_set_by_the_cli_is_honoured_within_a_second(self, site: Deployment) -> None:
        raw = site.create_key("limited")
        key_id = site.key_id(raw)
        assert _get(site, raw).headers["ratelimit-limit"] == "100000"

        said = _cli_ok(site, "keys", "limit", key_id, "3 per hour")
        responses = _limited(site, raw, "3")

        assert "is now limited to 3/hour" in said
        assert [r.status_code for r in responses] == [200, 200, 200, 429]
        assert [r.headers["ratelimit-remaining"] for r in responses] == ["2", "1", "0", "0"]
        refused = responses[-1]
        assert _code(refused) == "rate_limited"
        assert refused.headers["ratelimit-limit"] == "3"
        assert 0 < int(refused.headers["retry-after"]) <= 3600
        changes = [(a, actor, d) for a, actor, d in _events(site) if a == "key.rate_limit_changed"]
        assert ("key.rate_limit_changed", "operator") in {(a, actor) for a, actor, _ in changes}
        assert any(
            d.startswith("'limited'") and d.endswith("is now limited to 3/hour") for _, _, d in changes
        )

        listed = site.cli("keys", "list", "--user", EMAIL, "--json")
        [row] = [k for k in json.loads(listed.stdout)["keys"] if k["id"] == key_id]
        assert row["rate_limit"] == "3/hour"
        with _client() as client:
            other = site.create_key("lister")
            body = client.get(site.url + "/v1/keys", headers={"Authorization": f"Bearer {other}"}).json()
        assert [k["rate_limit"] for k in body["keys"] if k["id"] == key_id] == ["3/hour"]

        said = _cli_ok(site, "keys", "limit", key_id, "default")
        assert "now limited to the server's default (100000/minute)" in said
        restored = _within_a_second(lambda: _get(site, raw), lambda r: r.status_code == 200)
        assert restored.status_code == 200
        assert restored.headers["ratelimit-limit"] == "100000"

    @pytest.mark.parametrize(
        ("rate", "says"),
        [
            ("0/minute", "'0/minute' is not a rate limit"),
            ("lots", "'lots' is not a rate limit"),
            ("10/second;1000/hour", "one limit per key, not several"),
            ("3/fortnight", "'3/fortnight' is not a rate limit"),
        ],
    )
    def test_a_bad_rate_is_one_line_and_changes_nothing(self, site: Deployment, rate: str, says: str) -> None:
        raw = site.create_key("bad rate")

        assert says in _cli_error(site, "keys", "limit", site.key_id(raw), rate)
        assert _get(site, raw).headers["ratelimit-limit"] == "100000"


def test_a_limit_is_honoured_with_redis(tmp_path: Path) -> None:
    server = deploy(tmp_path, {"THOTBOT_REDIS_URL": redis_url()})
    try:
        raw = server.create_key("redis limited")
        assert _get(server, raw).headers["ratelimit-limit"] == "100000"

        _cli_ok(server, "keys", "limit", server.key_id(raw), "3/hour")
        responses = _limited(server, raw, "3")

        assert [r.status_code for r in responses] == [200, 200, 200, 429]
        assert responses[-1].headers["ratelimit-remaining"] == "0"
        assert _code(responses[-1]) == "rate_limited"
    finally:
        server.stop()


def test_two_workers_share_a_keys_own_limit(tmp_path: Path) -> None:
    """Through the database: each worker applies the change, and the hits either one lets through
    count for both. As for any limit in this mode (ratelimit.py), a worker that has not served the
    key in the window yet learns the others' count at its first hit: that one may pass."""
    server = deploy(tmp_path, {}, workers=2)
    database = server.data / "thotbot.db"
    try:
        raw = server.create_key("shared limit")
        key_id = server.key_id(raw)
        _cli_ok(server, "keys", "limit", key_id, "3/hour")
        limited: list[tuple[int, int]] = []  # (status, worker) of each answer under the new limit
        workers: set[int] = set()
        for _ in range(80):
            response, worker = _request_worker(server, raw)
            if response.headers.get("ratelimit-limit") != "3":
                continue  # this worker has not read the change yet: its old limit counts apart
            limited.append((response.status_code, worker))
            workers.add(worker)
            # Let both workers share this hit and read the total back before the next request.
            _wait_for_hits(database, f"key/{key_id}/3600", len(limited))
            if len(limited) < 3:
                continue  # under the limit, a stale total only lets through what passes anyway
            time.sleep(0.3)
            # Past the limit, each worker must answer twice: its first answer may be the one
            # that passes (it had not served the key yet), its second must be a refusal.
            past = [[s for i, (s, w) in enumerate(limited) if w == worker and i >= 3] for worker in workers]
            if len(workers) == 2 and all(len(answers) >= 2 for answers in past):
                break
    finally:
        server.stop()

    statuses = [status for status, _ in limited]
    assert len(workers) == 2, "both workers answered under the key's limit"
    assert statuses[:3] == [200, 200, 200]
    assert statuses.count(200) <= 3 + 1, statuses
    # Once each has served the key, both refuse it: they count each other's hits.
    for worker in workers:
        assert [s for s, w in limited if w == worker][-1] == 429, limited


def _request_worker(server: Deployment, raw: str) -> tuple[httpx.Response, int]:
    """One GET on a connection of its own, and the worker process that answered it."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/v1/version", headers={"Authorization": f"Bearer {raw}"})
        answer = connection.getresponse()
        answer.read()
        assert connection.sock is not None
        worker = _worker_holding(server, connection.sock.getsockname()[1])
        response = httpx.Response(answer.status, headers=answer.getheaders())
        return response, worker
    finally:
        connection.close()


def _wait_for_hits(database: Path, bucket: str, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            row = db.execute(
                "SELECT COALESCE(SUM(hits), 0) FROM rate_limit_windows WHERE bucket = ?", (bucket,)
            ).fetchone()
        if int(row[0]) >= count:
            return
        assert time.monotonic() < deadline, "the workers did not share their counts within 30 s"
        time.sleep(0.02)
