"""Shared fixtures: settings and services on a real SQLite file or a real PostgreSQL, the app, clients."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from tests.services import postgres_database
from tests.smtp import Inbox, smtp_server
from thotbot.app import ThotbotApp, create_app
from thotbot.config import Settings, load_settings
from thotbot.services import Services, build_services
from thotbot.storage.db import make_engine
from thotbot.storage.migrate import upgrade
from thotbot.storage.models import Base

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No THOTBOT_* variable or .env file from the developer's shell leaks into a test."""
    import os

    for name in list(os.environ):
        if name.startswith("THOTBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    """A real SMTP server (aiosmtpd) on a free loopback port, and what it received."""
    with smtp_server() as inbox:
        yield inbox


@pytest.fixture(scope="session")
def _postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated once per run; each test gets a copy instead of migrating anew."""
    path = tmp_path_factory.mktemp("template") / "thotbot.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as connection:
        # Everything into the main file, so that copying the file alone copies the database.
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture
def sqlite_url(_sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated, empty SQLite database of this test's own: a copy of the template."""
    target = tmp_path / "var" / "thotbot.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: a copy of the migrated SQLite template, or the run's PostgreSQL
    database (migrated once per run) emptied after the test."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_url")
        return
    url: str = request.getfixturevalue("_postgres_url")
    yield url
    # The engine alone, not Settings: a test may leave a bad THOTBOT_* value in the environment.
    engine = make_engine(url)
    with engine.begin() as connection:
        tables = ", ".join(f'"{t.name}"' for t in reversed(Base.metadata.sorted_tables))
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return load_settings(database_url=database_url)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    # database_url is migrated already: a copy of the template, or the run's PostgreSQL database.
    services = build_services(settings)
    yield services
    services.engine.dispose()


@pytest.fixture
def app(settings: Settings, services: Services) -> ThotbotApp:
    return create_app(settings, services)


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def client_factory(app: ThotbotApp) -> ClientFactory:
    return functools.partial(TestClient, app, base_url="http://localhost")


@pytest.fixture
def client(client_factory: ClientFactory) -> Iterator[TestClient]:
    with client_factory() as client:
        yield client


# The store conformance suite (tests/storage/conformance/) picks its backend per test.


@pytest.fixture
def postgres_url(_postgres_url: str) -> Iterator[str]:
    """The run's PostgreSQL database (migrated once per run), emptied after the test."""
    yield _postgres_url
    engine = make_engine(_postgres_url)
    with engine.begin() as connection:
        tables = ", ".join(f'"{t.name}"' for t in reversed(Base.metadata.sorted_tables))
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


def pytest_collection_modifyitems(items: list[Any]) -> None:
    # Browser tests are the slowest: run them last so quick failures show first.
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
