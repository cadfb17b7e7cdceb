"""Real backing services for tests: PostgreSQL and Redis on loopback, and free ports."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import psycopg
import pytest
import redis

PG_ADMIN_URL = os.environ.get("THOTBOT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("THOTBOT_TEST_REDIS", "redis://127.0.0.1:6379/15")


def missing_service(reason: str) -> NoReturn:
    """Under CI=true a missing service fails the test; elsewhere it skips, saying why."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: services are required)")
    pytest.skip(reason)


def _pg_url(database: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


@contextmanager
def postgres_database(template: str | None = None) -> Iterator[str]:
    """Create a database of its own for this test run (a copy of ``template``, a database's URL, when
    given: cheaper than migrating anew); drop it afterwards. Its name tells the pytest-xdist worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"thotbot_test_{worker}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    copy = "" if template is None else f' TEMPLATE "{template.rsplit("/", 1)[1]}"'
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        missing_service(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"{copy}')
        # A test database need not outlive a crash: commits do not wait for the disk.
        admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    try:
        yield _pg_url(name).replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def postgres_refusing(url: str) -> Iterator[None]:
    """The database of ``url`` down for a while: its connections cut and new ones refused."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        missing_service(f"Redis is not reachable at {REDIS_URL}: {exc}")
    return REDIS_URL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
