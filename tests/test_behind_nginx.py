"""End to end: a real `thotbot serve` behind Debian's nginx, run with the committed deploy/nginx.conf.

Clients come from two loopback source addresses (127.0.0.2 and 127.0.0.3); nginx reaches thotbot
from 127.0.0.1. Also: clients that talk to thotbot directly and forge X-Forwarded-For.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.dashboard.helpers import csrf_token
from tests.live import LiveServer, start_server
from tests.nginx import Nginx, start_nginx
from thotbot.config import load_settings
from thotbot.core.accounts import hash_password
from thotbot.core.keys import PREFIX
from thotbot.services import build_services
from thotbot.storage.migrate import upgrade

pytestmark = pytest.mark.nginx

EMAIL = "ops@example.com"
PASSWORD = "a long enough password"
ANON_LIMIT = 5
ALICE, BOB = "127.0.0.2", "127.0.0.3"


def seed(database_url: str) -> str:
    """A migrated database with one account; returns a key of it (in process: faster than the CLI)."""
    services = build_services(load_settings(database_url=database_url))
    try:
        upgrade(services.engine)
        account = services.users.create(EMAIL, hash_password(PASSWORD))
        raw, _ = services.keys.create(account.id, "good")
        return raw
    finally:
        services.engine.dispose()


def client_from(address: str, base_url: str) -> httpx.Client:
    """An HTTP client whose connections leave from this loopback address."""
    return httpx.Client(base_url=base_url, transport=httpx.HTTPTransport(local_address=address), timeout=15)


def bad_key() -> dict[str, str]:
    return {"Authorization": "Bearer " + PREFIX + secrets.token_hex(48)}


@dataclass
class Deployment:
    thotbot: LiveServer
    nginx: Nginx | None
    key: str
    data: Path


def _deploy(workdir: Path, trusted: str | None, *, behind_nginx: bool) -> Iterator[Deployment]:
    data = workdir / "data"
    data.mkdir()
    database_url = f"sqlite:///{data / 'thotbot.db'}"
    key = seed(database_url)
    settings = {
        "THOTBOT_DATABASE_URL": database_url,
        "THOTBOT_RATE_LIMIT": "1000/minute",
        "THOTBOT_ANON_RATE_LIMIT": f"{ANON_LIMIT}/minute",
    }
    if trusted is not None:
        settings["THOTBOT_TRUSTED_PROXIES"] = trusted
    server = start_server(workdir, settings)
    nginx = None
    try:
        nginx = start_nginx(workdir, [server.port]) if behind_nginx else None
        yield Deployment(server, nginx, key, data / "thotbot.db")
    finally:
        if nginx is not None:
            nginx.stop()
        server.stop()


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Shared by the tests below: each uses client addresses of its own."""
    yield from _deploy(tmp_path_factory.mktemp("trusted"), "127.0.0.1", behind_nginx=True)


@pytest.fixture
def behind_nginx_untrusted(tmp_path: Path) -> Iterator[Deployment]:
    yield from _deploy(tmp_path, None, behind_nginx=True)


#: What a client may send to try to be counted as someone else, or as the proxy.
JUNK: list[dict[str, str]] = [
    {"X-Forwarded-For": "garbage"},
    {"X-Forwarded-For": "198.51.100.1, " * 200 + "not-an-address"},
    {"X-Forwarded-For": "203.0.113.9"},
    {"Forwarded": "for=unknown"},
    {"X-Forwarded-For": ""},
]


def _exhaust_anon_limit(url: str, address: str, *, junk: bool = False) -> None:
    """ANON_LIMIT failures from ``address`` (each with junk headers), then one more, refused."""
    with client_from(address, url) as alice:
        statuses = [
            alice.get("/v1/me", headers={**bad_key(), **(JUNK[i % len(JUNK)] if junk else {})}).status_code
            for i in range(ANON_LIMIT)
        ]
        # Refused only if every failure above counted against this client, whatever it sent.
        statuses.append(alice.get("/v1/me", headers=bad_key()).status_code)
    assert statuses == [401] * ANON_LIMIT + [429]


def test_clients_behind_nginx_are_counted_apart(behind_nginx: Deployment) -> None:
    assert behind_nginx.nginx is not None
    url = behind_nginx.nginx.url
    _exhaust_anon_limit(url, ALICE, junk=True)

    with client_from(BOB, url) as bob:
        good = bob.get("/v1/me", headers={"Authorization": f"Bearer {behind_nginx.key}"})
        bad = bob.get("/v1/me", headers=bad_key())
        # Bob cannot name Alice to get her blocked: nginx appends the address it saw.
        forged = bob.get("/v1/me", headers={**bad_key(), "X-Forwarded-For": ALICE})

    assert good.status_code == 200
    assert good.headers["ratelimit-remaining"] == "999"
    assert bad.status_code == 401
    assert bad.headers["ratelimit-remaining"] == str(ANON_LIMIT - 1)
    assert forged.status_code == 401
    assert forged.headers["ratelimit-remaining"] == str(ANON_LIMIT - 2)
    # The access log (written every half second) names the clients, not nginx.
    assert _logged(behind_nginx.thotbot, f'{ALICE} "GET /v1/me" 429')
    assert _logged(behind_nginx.thotbot, f'{BOB} "GET /v1/me" 200')


def _logged(server: LiveServer, text: str, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while text not in server.log_text():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_without_trusted_proxies_everyone_behind_nginx_is_one_client(
    behind_nginx_untrusted: Deployment,
) -> None:
    """What THOTBOT_TRUSTED_PROXIES is for: unset, Alice's failures lock Bob's key out too."""
    assert behind_nginx_untrusted.nginx is not None
    url = behind_nginx_untrusted.nginx.url
    _exhaust_anon_limit(url, ALICE)

    with client_from(BOB, url) as bob:
        good = bob.get("/v1/me", headers={"Authorization": f"Bearer {behind_nginx_untrusted.key}"})

    assert good.status_code == 429


def test_sign_in_failures_behind_nginx_are_logged_per_client(behind_nginx: Deployment) -> None:
    assert behind_nginx.nginx is not None
    for address in (ALICE, BOB):
        with client_from(address, behind_nginx.nginx.url) as browser:
            page = browser.get("/login").text
            form = {"email": EMAIL, "password": "not the password", "csrf_token": csrf_token(page)}
            assert browser.post("/login", data=form).status_code == 400

    with contextlib.closing(sqlite3.connect(behind_nginx.data)) as db:
        rows = db.execute(
            "SELECT ip_address FROM security_events WHERE action = 'session.sign_in_failed'"
        ).fetchall()
    assert sorted(ip for (ip,) in rows) == [ALICE, BOB]


def test_trusted_proxy_may_name_ipv6_clients_counted_by_64(behind_nginx: Deployment) -> None:
    """A trusted proxy (127.0.0.1 here, talking to thotbot directly) names IPv6 clients: the
    addresses of one /64 are one client, and another /64 is another."""
    with client_from("127.0.0.1", behind_nginx.thotbot.url) as proxy:
        statuses = [
            proxy.get("/v1/me", headers={**bad_key(), "X-Forwarded-For": f"2001:db8:1:2::{i:x}"}).status_code
            for i in range(1, ANON_LIMIT + 2)
        ]
        other = proxy.get("/v1/me", headers={**bad_key(), "X-Forwarded-For": "2001:db8:1:3::1"})
    assert statuses == [401] * ANON_LIMIT + [429]
    assert other.status_code == 401


@pytest.fixture(params=[None, "10.9.8.7"], ids=["unset", "other-proxy"])
def direct(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    """No proxy in front: THOTBOT_TRUSTED_PROXIES unset, or naming a proxy that is not there."""
    yield from _deploy(tmp_path, request.param, behind_nginx=False)


def test_forged_forwarded_headers_from_an_untrusted_client_are_ignored(direct: Deployment) -> None:
    """A local process (127.0.0.1, which uvicorn would believe by default) poses as Bob."""
    url = direct.thotbot.url
    forged = {"X-Forwarded-For": BOB, "Forwarded": f"for={BOB}"}
    with client_from("127.0.0.1", url) as mallory:
        statuses = [
            mallory.get("/v1/me", headers={**bad_key(), **forged}).status_code for _ in range(ANON_LIMIT + 1)
        ]
    with client_from(BOB, url) as bob:
        bad = bob.get("/v1/me", headers=bad_key())
        good = bob.get("/v1/me", headers={"Authorization": f"Bearer {direct.key}"})

    # Counted by its own address: limited, and Bob's count is untouched.
    assert statuses == [401] * ANON_LIMIT + [429]
    assert bad.status_code == 401
    assert bad.headers["ratelimit-remaining"] == str(ANON_LIMIT - 1)
    assert good.status_code == 200
