"""`thotbot serve --workers 2` without Redis: the two worker processes share one rate limit through
the database. Every request goes over a fresh connection, so both workers answer; which worker held
each one is read from /proc, so the test knows when each has synced (Linux only)."""

from __future__ import annotations

import functools
import http.client
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.factories import make_api_key
from tests.live import LiveServer, start_server
from thotbot.config import load_settings
from thotbot.services import build_services
from thotbot.storage import KeyRecord
from thotbot.storage.migrate import upgrade

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

LIMIT = 20
BATCH = 10  # a divisor of LIMIT: the limit is reached at the end of a batch, after a sync


def test_two_workers_share_one_limit_exactly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'thotbot.db'}"
    services = build_services(load_settings(database_url=url))
    upgrade(services.engine)
    # A second pair of keys, in case the first run straddles the end of a minute (a window).
    runs = [(make_api_key(services), make_api_key(services)) for _ in range(3)]
    services.engine.dispose()
    server = start_server(
        tmp_path, {"THOTBOT_DATABASE_URL": url, "THOTBOT_RATE_LIMIT": f"{LIMIT}/minute"}, workers=2
    )
    statuses: list[int] = []
    workers: set[int] = set()
    try:
        for key, probe in runs:
            minute = int(time.time() // 60)
            try:
                statuses, workers = _send(server, tmp_path / "thotbot.db", key, probe, minute)
            except _NewMinute:
                continue  # hits left unshared when a window ends are dropped: the next pair
            if int(time.time() // 60) == minute:
                break
    finally:
        server.stop()

    assert len(workers) == 2, "both workers answered"
    assert statuses == [200] * LIMIT + [429] * (60 - LIMIT)


class _NewMinute(Exception):
    """The run reached the next minute, another window: it counts from zero there."""


def _send(
    server: LiveServer,
    database: Path,
    key: tuple[str, KeyRecord],
    probe: tuple[str, KeyRecord],
    minute: int,
) -> tuple[list[int], set[int]]:
    """60 requests with ``key``, each on a fresh connection, in batches. After each batch, once the
    database holds all its hits, each worker answers a request with ``probe`` and shares it: each
    has then read back what the batch left, and the next batch is decided on that."""
    statuses: list[int] = []
    answered: set[int] = set()
    probes = 0
    while len(statuses) < 60:
        for _ in range(BATCH):
            status, worker = _request(server, key[0])
            statuses.append(status)
            answered.add(worker)
        _wait(functools.partial(_has_hits, database, key[1], len(statuses)), minute)
        probed: set[int] = set()
        while probed != _workers(server):
            probed.add(_request(server, probe[0])[1])
            probes += 1
        _wait(functools.partial(_has_hits, database, probe[1], probes), minute)
    return statuses, answered


def _request(server: LiveServer, key: str) -> tuple[int, int]:
    """The status of one GET /v1/version on a connection of its own, and the worker that answered."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/v1/version", headers={"Authorization": f"Bearer {key}"})
        response = connection.getresponse()
        response.read()
        assert connection.sock is not None
        return response.status, _worker_holding(server, connection.sock.getsockname()[1])
    finally:
        connection.close()


def _has_hits(database: Path, key: KeyRecord, count: int) -> bool:
    """Whether the workers have shared ``count`` hits of the key."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        row = db.execute(
            "SELECT COALESCE(SUM(hits), 0) FROM rate_limit_windows WHERE bucket = ?", ("key/" + key.id,)
        ).fetchone()
    return int(row[0]) == count


def _wait(condition: Callable[[], bool], minute: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if int(time.time() // 60) != minute:
            raise _NewMinute
        assert time.monotonic() < deadline, "the workers did not share their counts within 30 s"
        time.sleep(0.02)


def _workers(server: LiveServer) -> set[int]:
    """The server's worker processes: its children that listen on its port."""
    children = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == server.process.pid:
                children.add(int(entry))
    listening = _socket_inodes(lambda local, remote, state: local == server.port and state == "0A")
    return {pid for pid in children if _inodes_of(pid) & listening}


def _worker_holding(server: LiveServer, client_port: int) -> int:
    accepted = _socket_inodes(lambda local, remote, state: local == server.port and remote == client_port)
    [pid] = [pid for pid in _workers(server) if _inodes_of(pid) & accepted]
    return pid


def _socket_inodes(match: Callable[[int, int, str], bool]) -> set[str]:
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
        if match(local, remote, fields[3]):
            inodes.add(fields[9])
    return inodes


def _inodes_of(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        pass
    return inodes
