"""A real `thotbot serve` with an account, and the CLI run against its database, for end-to-end tests."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.factories import make_user
from tests.live import LiveServer, start_server
from thotbot.config import load_settings
from thotbot.core import keys
from thotbot.services import build_services

__all__ = ["EMAIL", "PASSWORD", "Deployment", "deploy"]

THOTBOT = str(Path(sys.executable).parent / "thotbot")
EMAIL = "ops@example.com"
PASSWORD = "a long enough password"


@dataclass
class Deployment(LiveServer):
    #: Where its SQLite database is.
    data: Path = Path()

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the CLI in another process, against the same database."""
        return subprocess.run(
            [THOTBOT, *args],
            input=stdin,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def create_key(self, name: str, *extra: str) -> str:
        done = self.cli("keys", "create", "--user", EMAIL, "--name", name, *extra)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def key_id(self, raw: str) -> str:
        """The key's id, read from the database (a CLI process would take a second or two to start)."""
        database = sqlite3.connect(f"file:{self.data / 'thotbot.db'}?mode=ro", uri=True)
        try:
            query = "SELECT id FROM api_keys WHERE key_hash = ?"
            [(key_id,)] = database.execute(query, (keys.hash_key(raw),))
        finally:
            database.close()
        return str(key_id)

    def stored(self) -> str:
        """Every file of the SQLite database (the -wal and -shm too), as text."""
        return "".join(p.read_bytes().decode("latin-1") for p in sorted(self.data.glob("thotbot.db*")))


def deploy(
    workdir: Path, settings: Mapping[str, str], *, host: str = "127.0.0.1", workers: int = 1
) -> Deployment:
    """A server on SQLite under ``workdir``, with lenient rate limits, and the account EMAIL."""
    data = workdir / "data"
    server = start_server(
        workdir,
        {
            "THOTBOT_DATABASE_URL": f"sqlite:///{data / 'thotbot.db'}",
            # Every request comes from one address here; the limits have their own tests.
            "THOTBOT_RATE_LIMIT": "100000/minute",
            "THOTBOT_ANON_RATE_LIMIT": "100000/minute",
            **settings,
        },
        host=host,
        workers=workers,
    )
    # The server has migrated the database: the account is made in process, through the same stores
    # and as `thotbot users create` makes it (that has its own tests; another CLI process would take
    # seconds to start).
    services = build_services(load_settings(database_url=server.env["THOTBOT_DATABASE_URL"]))
    try:
        account = make_user(services, EMAIL, password=PASSWORD)
        services.security_log.record(
            account.id, "account.created", actor="operator", detail="created with the CLI"
        )
    finally:
        services.engine.dispose()
    return Deployment(server.process, server.port, server.log, server.env, server.host, data=data)
