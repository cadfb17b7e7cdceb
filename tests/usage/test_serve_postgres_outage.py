"""The PostgreSQL outage under traffic: a file of its own, so pytest-xdist runs it beside the SQLite one
(tests/usage/test_serve.py) instead of after it; each holds its traffic through a 20-second outage."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from tests.services import postgres_database, postgres_refusing
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
        outage_keeps_every_count(url, tmp_path, capsys, functools.partial(postgres_refusing, url))
