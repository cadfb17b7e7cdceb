"""A real `thotbot serve` in another process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.services import free_port

__all__ = ["LiveServer", "start_server"]


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    #: The environment it runs with: the CLI run with it talks to the same database.
    env: dict[str, str]
    #: The loopback address it listens on: 127.0.0.1, or ::1 for IPv6 clients.
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def public_url(self) -> str:
        """Where a browser goes: WebAuthn wants a host name, not an IP address."""
        return f"http://localhost:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as an orchestrator would, then the exit code (uvicorn re-raises the signal)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise


def start_server(
    workdir: Path,
    settings: Mapping[str, str],
    *,
    log: Path | None = None,
    public_url: bool = False,
    open_files: int | None = None,
    scheme: str = "http",
    workers: int = 1,
    host: str = "127.0.0.1",
) -> LiveServer:
    """Start `thotbot serve` with these THOTBOT_* settings (and no others) and wait for /healthz.

    With ``public_url``, THOTBOT_PUBLIC_URL is http://localhost:PORT (``scheme`` "https" makes it
    https, as behind a TLS proxy; the server itself still speaks http); with ``open_files``, it runs
    under that RLIMIT_NOFILE, as under `ulimit -n`; ``workers`` is `serve --workers`; ``host`` is
    where it listens (``::1`` for IPv6 clients). A port another
    process took between our look and uvicorn's bind is retried on another one.
    """
    log = log or workdir / "server.log"
    base = {k: v for k, v in os.environ.items() if not k.startswith("THOTBOT_")}
    for _ in range(3):
        port = free_port()
        env = {**base, **settings}
        if public_url:
            env["THOTBOT_PUBLIC_URL"] = f"{scheme}://localhost:{port}"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "thotbot", "serve", "--host", host, "--port", str(port)),
                    *(("--workers", str(workers)) if workers > 1 else ()),
                ],
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=None if open_files is None else partial(_limit_files, open_files),
            )
        server = LiveServer(process, port, log, env, host)
        if _serving(server):
            return server
        if process.poll() is None:
            process.kill()
            process.wait()
        if "address already in use" not in server.log_text():
            break
    pytest.fail(f"thotbot serve did not start:\n{server.log_text()}")


@contextmanager
def sqlite_server(workdir: Path, *, public_url: bool = False) -> Iterator[LiveServer]:
    """`thotbot serve` on a SQLite file of its own in ``workdir``, stopped (SIGTERM) afterwards."""
    live = start_server(
        workdir, {"THOTBOT_DATABASE_URL": f"sqlite:///{workdir / 'thotbot.db'}"}, public_url=public_url
    )
    try:
        yield live
    finally:
        live.stop()


def _limit_files(count: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))


def _serving(server: LiveServer, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.process.poll() is None:
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return False
