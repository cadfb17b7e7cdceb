"""End to end: two `thotbot serve` instances on one PostgreSQL database and Redis, behind nginx.

As docs/OPERATING.md lays it out: nginx, run with the committed deploy/nginx.conf (its commented
second server line filled in), takes turns between two real server processes on loopback ports,
which share a fresh PostgreSQL database and the real Redis. Every response through nginx names the
instance that answered (an X-Upstream header the test's main config adds), so each claim is checked
on each instance, directly and through nginx: revocations, the shared rate limit, dashboard
sessions, and what SIGKILL of one instance in the middle of key creations costs.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from tests.dashboard.helpers import csrf_token
from tests.factories import bearer
from tests.live import LiveServer, start_server
from tests.nginx import Nginx, start_nginx
from tests.services import postgres_database, redis_url
from thotbot.config import load_settings
from thotbot.core.accounts import hash_password
from thotbot.services import Services, build_services

pytestmark = [pytest.mark.nginx, pytest.mark.postgres, pytest.mark.redis]

EMAIL = "cluster@example.com"
#: Tests only: each answer through nginx names the instance (host:port) that gave it.
UPSTREAM_HEADER = "    add_header X-Upstream $upstream_addr always;"
#: What "within a second" may take on a loaded machine on top of the second itself.
SLACK = 0.25
#: Redis at a port where nothing listens: every instance fails to reach it, and must do without.
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


@dataclass
class Cluster:
    instances: list[LiveServer]
    nginx: Nginx
    services: Services
    account_id: str
    #: A key of the account granted account:security: it may create keys through the API.
    admin: str
    _names: Iterator[int] = field(default_factory=itertools.count)

    def upstream(self, instance: LiveServer) -> str:
        """How nginx names this instance in X-Upstream."""
        return f"127.0.0.1:{instance.port}"

    def make_key(self) -> tuple[str, str]:
        """A new key of the account (in process: a CLI would take a second or two to start)."""
        raw, record = self.services.keys.create(self.account_id, f"key {next(self._names)}")
        return raw, record.id


def _start_cluster(workdir: Path, template: str, settings: Mapping[str, str]) -> Iterator[Cluster]:
    with postgres_database(template=template) as database_url:
        services = build_services(load_settings(database_url=database_url))
        account = services.users.create(EMAIL, None)
        admin, record = services.keys.create(account.id, "admin")
        services.keys.grant(record.id, "account:security")
        env = {
            "THOTBOT_DATABASE_URL": database_url,
            "THOTBOT_TRUSTED_PROXIES": "127.0.0.1",
            "THOTBOT_ANON_RATE_LIMIT": "100000/minute",
            **settings,
        }
        started: list[LiveServer] = []
        nginx = None
        try:
            # Both at once: each takes a second or two to import and migrate (nothing, here).
            with ThreadPoolExecutor(2) as pool:
                futures = [pool.submit(_start_instance, workdir / name, env, started) for name in "ab"]
                instances = [future.result() for future in futures]
            nginx = start_nginx(workdir, [i.port for i in instances], http=UPSTREAM_HEADER)
            yield Cluster(instances, nginx, services, account.id, admin)
        finally:
            if nginx is not None:
                nginx.stop()
            for instance in started:
                instance.stop()
            services.engine.dispose()


def _start_instance(workdir: Path, env: Mapping[str, str], started: list[LiveServer]) -> LiveServer:
    workdir.mkdir()
    instance = start_server(workdir, env)
    started.append(instance)
    return instance


@pytest.fixture(scope="module")
def with_redis(tmp_path_factory: pytest.TempPathFactory, postgres_template: str) -> Iterator[Cluster]:
    """Redis shared; a per-key limit low enough to reach: each test uses keys of its own."""
    settings = {"THOTBOT_REDIS_URL": redis_url(), "THOTBOT_RATE_LIMIT": "10/minute"}
    yield from _start_cluster(tmp_path_factory.mktemp("with-redis"), postgres_template, settings)


@pytest.fixture(scope="module")
def without_redis(tmp_path_factory: pytest.TempPathFactory, postgres_template: str) -> Iterator[Cluster]:
    """Redis unreachable for every instance: only the database poll carries key changes."""
    settings = {"THOTBOT_REDIS_URL": UNREACHABLE_REDIS, "THOTBOT_RATE_LIMIT": "100000/minute"}
    yield from _start_cluster(tmp_path_factory.mktemp("without-redis"), postgres_template, settings)


@pytest.fixture
def doomed(tmp_path: Path, postgres_template: str) -> Iterator[Cluster]:
    """A cluster of this test's own: the test kills one of its instances."""
    settings = {"THOTBOT_REDIS_URL": redis_url(), "THOTBOT_RATE_LIMIT": "100000/minute"}
    yield from _start_cluster(tmp_path, postgres_template, settings)


def _accepted_everywhere(cluster: Cluster, client: httpx.Client, raw: str) -> None:
    """The key works on each instance, directly and through nginx (which takes them in turn)."""
    for instance in cluster.instances:
        assert client.get(instance.url + "/v1/me", headers=bearer(raw)).status_code == 200
    through = [client.get(cluster.nginx.url + "/v1/me", headers=bearer(raw)) for _ in cluster.instances]
    assert [r.status_code for r in through] == [200] * len(cluster.instances)
    assert {_answered_by(r) for r in through} == {cluster.upstream(i) for i in cluster.instances}


def _answered_by(response: httpx.Response) -> str:
    """The instance that answered: nginx lists every one it tried, the last answered."""
    tried = str(response.headers.get("x-upstream", ""))
    return tried.rsplit(",", 1)[-1].strip()


def _is_refused(response: httpx.Response) -> bool:
    # A 429 is not a refusal: the rate limit applies only to a key the instance still accepts.
    return response.status_code == 401 and response.json()["code"] == "revoked_api_key"


@pytest.mark.parametrize("deployment", ["with_redis", "without_redis"])
def test_a_revocation_reaches_every_instance_within_a_second(
    deployment: str, request: pytest.FixtureRequest
) -> None:
    cluster: Cluster = request.getfixturevalue(deployment)
    raw, key_id = cluster.make_key()
    first, _ = cluster.instances
    with httpx.Client(timeout=10) as client:
        _accepted_everywhere(cluster, client, raw)  # and so cached by every instance

        revoked = client.delete(f"{first.url}/v1/keys/{key_id}", headers=bearer(cluster.admin))
        assert revoked.status_code == 204
        deadline = time.monotonic() + 1.0 + SLACK

        # Where the key must be refused: each instance directly, and each through nginx.
        pending = {f"{i.url} directly" for i in cluster.instances}
        pending |= {f"{cluster.upstream(i)} through nginx" for i in cluster.instances}
        last: dict[str, int] = {}
        while pending and time.monotonic() < deadline:
            for instance in cluster.instances:
                response = client.get(instance.url + "/v1/me", headers=bearer(raw))
                last[f"{instance.url} directly"] = response.status_code
                if _is_refused(response):
                    pending.discard(f"{instance.url} directly")
            response = client.get(cluster.nginx.url + "/v1/me", headers=bearer(raw))
            where = f"{_answered_by(response)} through nginx"
            last[where] = response.status_code
            if _is_refused(response):
                pending.discard(where)
            time.sleep(0.02)

    assert not pending, f"still accepted a second after the revocation: {last}"


def test_instances_share_one_rate_limit(with_redis: Cluster) -> None:
    raw, _ = with_redis.make_key()

    with httpx.Client(base_url=with_redis.nginx.url, timeout=10) as client:
        responses = [client.get("/v1/me", headers=bearer(raw)) for _ in range(20)]

    assert [r.status_code for r in responses] == [200] * 10 + [429] * 10
    instances = {with_redis.upstream(i) for i in with_redis.instances}
    # nginx took the instances in turn: each counted the other's requests.
    assert {_answered_by(r) for r in responses[:10]} == instances
    assert {_answered_by(r) for r in responses[10:]} == instances
    assert [r.headers["ratelimit-remaining"] for r in responses] == [str(9 - i) for i in range(10)] + [
        "0"
    ] * 10
    assert {r.headers["ratelimit-limit"] for r in responses} == {"10"}
    for refused in responses[10:]:
        assert refused.json()["code"] == "rate_limited"
        assert 0 < int(refused.headers["retry-after"]) <= 60
        assert 0 < int(refused.headers["ratelimit-reset"]) <= 60


def test_a_dashboard_session_is_good_on_every_instance(with_redis: Cluster) -> None:
    """No sticky sessions needed: a form from one instance is accepted by the other, and the
    session it opens is honoured by both (the signing keys and sessions live in the database)."""
    email, password = "browser@example.com", "a long enough password"
    with_redis.services.users.create(email, hash_password(password))
    first, second = with_redis.instances

    with httpx.Client(timeout=10) as browser:  # cookies are per host, whatever the port
        form = browser.get(first.url + "/login")
        data = {"email": email, "password": password, "csrf_token": csrf_token(form.text)}
        signed_in = browser.post(second.url + "/login", data=data)
        pages = [browser.get(i.url + "/dashboard/api-keys") for i in with_redis.instances]
        through = [browser.get(with_redis.nginx.url + "/dashboard/api-keys") for _ in with_redis.instances]

    assert signed_in.status_code == 303, signed_in.text
    assert [p.status_code for p in pages + through] == [200] * 4
    assert {_answered_by(r) for r in through} == {with_redis.upstream(i) for i in with_redis.instances}
    assert all(email in p.text for p in pages + through)


class Answer(NamedTuple):
    status: int
    #: The instance that answered, as nginx names it.
    instance: str
    #: The key and its id, when one was created.
    key: str | None = None
    key_id: str | None = None


@dataclass
class Creations:
    """What the clients were answered, as they were answered."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: list[Answer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def created_by(self, upstream: str) -> int:
        with self.lock:
            return sum(1 for a in self.answers if a.status == 201 and a.instance == upstream)


def _create_keys(cluster: Cluster, client_id: int, creations: Creations, stop: threading.Event) -> None:
    with httpx.Client(base_url=cluster.nginx.url, headers=bearer(cluster.admin), timeout=30) as client:
        for n in itertools.count():
            if stop.is_set():
                return
            try:
                response = client.post("/v1/keys", json={"name": f"client {client_id} key {n}"})
            except httpx.HTTPError as exc:  # nginx itself must always answer
                with creations.lock:
                    creations.errors.append(repr(exc))
                continue
            answer = Answer(response.status_code, _answered_by(response))
            if response.status_code == 201:
                body = response.json()
                answer = answer._replace(key=body["key"], key_id=body["id"])
            with creations.lock:
                creations.answers.append(answer)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_sigkill_during_key_creation_loses_no_answered_key(doomed: Cluster) -> None:
    victim, survivor = doomed.instances
    creations, stop = Creations(), threading.Event()
    clients = [
        threading.Thread(target=_create_keys, args=(doomed, i, creations, stop), name=f"creator-{i}")
        for i in range(4)
    ]
    for thread in clients:
        thread.start()
    try:
        _wait_for(lambda: creations.created_by(doomed.upstream(victim)) >= 5, "keys created by the victim")
        victim.process.kill()  # SIGKILL: no shutdown, whatever it was doing
        assert victim.process.wait(10) < 0
        after = creations.created_by(doomed.upstream(survivor))
        _wait_for(
            lambda: creations.created_by(doomed.upstream(survivor)) >= after + 10,
            "keys created by the survivor after the kill",
        )
    finally:
        stop.set()
        for thread in clients:
            thread.join(60)

    assert creations.errors == []
    # A creation the victim had not answered when it died is a 502 from nginx; every other one,
    # sent to the survivor or retried there when the victim refused the connection, is a 201.
    assert {a.status for a in creations.answers} <= {201, 502}
    created = [a for a in creations.answers if a.status == 201]
    with httpx.Client(timeout=10) as client:
        for answer in created:
            assert answer.key is not None
            me = client.get(survivor.url + "/v1/me", headers=bearer(answer.key))
            assert me.status_code == 200, f"{answer.key_id}, created by {answer.instance}, is lost"
            assert me.json()["key"]["id"] == answer.key_id
        # nginx still serves, from the survivor alone.
        raw, _ = doomed.make_key()
        served = [client.get(doomed.nginx.url + "/v1/me", headers=bearer(raw)) for _ in range(6)]
    assert [r.status_code for r in served] == [200] * 6
    assert {_answered_by(r) for r in served} == {doomed.upstream(survivor)}
