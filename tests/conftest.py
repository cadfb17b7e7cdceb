"""Shared fixtures: settings and services on a real SQLite file or a real PostgreSQL, the app, clients."""

from __future__ import annotations

import dataclasses
import functools
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher, profiles
from starlette.testclient import TestClient

from tests.services import postgres_database
from tests.smtp import Inbox, smtp_server
from thotbot.app import ThotbotApp, create_app
from thotbot.config import Settings, load_settings
from thotbot.core import accounts
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


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashing() -> Iterator[None]:
    """Argon2id as in production, at its lowest work factors, in this process only.

    Production's RFC 9106 parameters cost a tenth of a second (more on a busy machine) for every
    sign-up, sign-in and password check the tests make; the hashes keep their format and lengths.
    Servers the tests start in other processes (`thotbot serve`, the CLI) hash at full cost.
    """
    cheap = dataclasses.replace(profiles.RFC_9106_LOW_MEMORY, time_cost=1, memory_cost=8, parallelism=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(accounts, "_hasher", PasswordHasher.from_parameters(cheap))
        yield


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    """A real SMTP server (aiosmtpd) on a free loopback port, and what it received."""
    with smtp_server() as inbox:
        yield inbox


@pytest.fixture
def mail_settings(database_url: str, inbox: Inbox) -> Settings:
    """Settings that mail through the test's own SMTP server, with links under https://thotbot.example."""
    return load_settings(database_url=database_url, smtp_url=inbox.url, public_url="https://thotbot.example")


@pytest.fixture
def mailing(services: Services, inbox: Inbox) -> Iterator[Inbox]:
    """The test's inbox; every mail its services queued is delivered before the test ends."""
    yield inbox
    assert services.mailer.flush(10)


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A PostgreSQL database migrated once per run (per pytest-xdist worker), which nothing else
    connects to: CREATE DATABASE ... TEMPLATE copies it for a test that needs a database of its own."""
    with postgres_database() as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


# DELETE, children first, then the sequences back to 1, in one round trip: on a few rows, many times
# faster than TRUNCATE, which makes new files for every table.
_DELETES = [f'DELETE FROM "{table.name}"' for table in reversed(Base.metadata.sorted_tables)]  # noqa: S608
_RESTART = (
    "SELECT setval(quote_ident(schemaname) || '.' || quote_ident(sequencename), 1, false) FROM pg_sequences"
)
_EMPTY_POSTGRES = ";".join([*_DELETES, _RESTART])


@pytest.fixture(scope="session")
def _postgres_url(postgres_template: str) -> Iterator[str]:
    """The run's PostgreSQL database (a copy of the template), which database_url empties after each test."""
    with postgres_database(template=postgres_template) as url:
        yield url


@pytest.fixture(scope="session")
def _empty_postgres(_postgres_url: str) -> Iterator[Callable[[], None]]:
    """Empties the run's PostgreSQL database through a connection kept for the run."""
    # The engine alone, not Settings: a test may leave a bad THOTBOT_* value in the environment.
    engine = make_engine(_postgres_url)

    def empty() -> None:
        with engine.begin() as connection:
            connection.exec_driver_sql(_EMPTY_POSTGRES)

    yield empty
    engine.dispose()


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
    empty: Callable[[], None] = request.getfixturevalue("_empty_postgres")
    yield url
    empty()


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
def postgres_url(_postgres_url: str, _empty_postgres: Callable[[], None]) -> Iterator[str]:
    """The run's PostgreSQL database (migrated once per run), emptied after the test."""
    yield _postgres_url
    _empty_postgres()


#: The files that take longest (live servers, 20-second outages, browsers), slowest first. Under
#: pytest-xdist (`make test`) each file runs whole in one worker, handed out in collection order:
#: starting these first keeps one of them from being the last thing a run waits for.
SLOW_FILES = (
    "tests/usage/test_serve.py",
    "tests/usage/test_serve_postgres_outage.py",
    "tests/test_server.py",
    "tests/test_cluster.py",
    "tests/test_security_log_server.py",
    "tests/dashboard/test_browser.py",
    "tests/dashboard/test_passkeys_browser.py",
    "tests/core/test_redaction.py",
    "tests/test_behind_nginx.py",
    "tests/dashboard/test_security.py",
    "tests/test_protocol_limits.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[Any]) -> None:
    if config.pluginmanager.hasplugin("xdist") and config.getoption("numprocesses", None):
        rank = {name: i for i, name in enumerate(SLOW_FILES)}
        items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(SLOW_FILES)))
    else:
        # In one process, browser tests (the slowest) go last, so quick failures show first.
        items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Where the browser tests left their screenshots. Here, not in tests/dashboard/conftest.py: under
    pytest-xdist the browsers run in the workers, and only this conftest is read here too."""
    reports = [r for outcome in ("passed", "failed") for r in terminalreporter.stats.get(outcome, [])]
    if any(getattr(r, "when", None) == "call" and "browser" in getattr(r, "keywords", {}) for r in reports):
        from tests.dashboard.browser import SCREENSHOTS

        terminalreporter.write_sep("-", "dashboard screenshots")
        terminalreporter.write_line(f"dashboard screenshots: {SCREENSHOTS}")
