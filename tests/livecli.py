"""A real `thotbot serve` with an account, and the CLI run against its database, for end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.live import LiveServer, start_server
from thotbot.core import keys

__all__ = ["EMAIL", "Deployment", "deploy"]

THOTBOT = str(Path(sys.executable).parent / "thotbot")
EMAIL = "ops@example.com"
PASSWORD = "a long enough password"


@dataclass
class Deployment:
    server: LiveServer
    data: Path

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [THOTBOT, *args],
            input=stdin,
            env=self.server.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def create_key(self, name: str) -> str:
        done = self.cli("keys", "create", "--user", EMAIL, "--name", name)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def key_id(self, raw: str) -> str:
        listed = json.loads(self.cli("keys", "list", "--user", EMAIL, "--json").stdout)["keys"]
        [item] = [k for k in listed if k["hint"] == keys.hint(raw)]
        return str(item["id"])

    def stored(self) -> str:
        """Every file of the SQLite database (the -wal and -shm too), as text."""
        return "".join(p.read_bytes().decode("latin-1") for p in sorted(self.data.glob("thotbot.db*")))


def deploy(workdir: Path, settings: Mapping[str, str]) -> Deployment:
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
    )
    deployment = Deployment(server, data)
    created = deployment.cli("users", "create", EMAIL, "--password-stdin", stdin=PASSWORD)
    assert created.returncode == 0, created.stderr
    return deployment
