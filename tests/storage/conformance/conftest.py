"""Every test here runs on each store backend: SQLite, PostgreSQL and memory.

The tests ask for ``services`` (or ``settings``) as elsewhere and get the backend's stores; they
use only what the Protocols in storage/__init__.py declare, so one suite holds every
implementation to the same behaviour. A test that needs a look inside a store (a row, a table)
belongs beside the SQL store's own tests in tests/storage/ or tests/dashboard/ instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from thotbot.config import Settings, load_settings
from thotbot.services import Services, build_memory_services, build_services

STORE_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "memory"]


@pytest.fixture(params=STORE_BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(store_backend: str, request: pytest.FixtureRequest) -> Settings:
    if store_backend == "memory":
        return load_settings()
    # The migrated databases of tests/conftest.py: a copy of the SQLite template, or the run's
    # PostgreSQL database emptied after the test.
    url: str = request.getfixturevalue("sqlite_url" if store_backend == "sqlite" else "postgres_url")
    return load_settings(database_url=url)


@pytest.fixture
def services(store_backend: str, settings: Settings) -> Iterator[Services]:
    build = build_memory_services if store_backend == "memory" else build_services
    services = build(settings)
    yield services
    services.engine.dispose()
