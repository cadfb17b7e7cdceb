"""The PostgreSQL outage under traffic: a file of its own, so pytest-xdist runs it beside the SQLite one
(tests/usage/test_serve.py) instead of after it; each holds its traffic through a 20-second outage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.services import PG_ADMIN_URL, postgres_database
from tests.usage.test_serve import outage_keeps_every_count


@pytest.mark.postgres
def test_postgres_unreachable_for_20_seconds_under_traffic(
    postgres_template: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with postgres_database(template=postgres_template) as url:  # migrated: a copy of the template
        monkeypatch.setenv("THOTBOT_DATABASE_URL", url)
        name = url.rsplit("/", 1)[1]

        @contextmanager
        def disconnected() -> Iterator[None]:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
                )
                try:
                    yield
                finally:
                    admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

        outage_keeps_every_count(url, tmp_path, capsys, disconnected)
