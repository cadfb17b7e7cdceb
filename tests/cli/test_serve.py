"""`thotbot serve`: what it says at start, and the settings that stop it before it serves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import free_port
from thotbot.cli import _rate_limits_notice, main
from thotbot.config import load_settings

THOTBOT = str(Path(sys.executable).parent / "thotbot")
NOTICE = "rate limits: the 2 workers share them through the database"


@pytest.fixture
def serve_workers(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`thotbot serve --workers 2` without Redis, its stderr in a file; stopped afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THOTBOT_")}
    env["THOTBOT_DATABASE_URL"] = f"sqlite:///{tmp_path / 'thotbot.db'}"
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as out:
        process = subprocess.Popen(
            [THOTBOT, "serve", "--port", str(free_port()), "--workers", "2"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=out,
            # Its own process group: the workers it forks are stopped with it.
            start_new_session=True,
        )
    try:
        yield process, stderr
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_workers_without_redis_say_they_share_the_limits_through_the_database(
    serve_workers: tuple[subprocess.Popen[bytes], Path],
) -> None:
    process, stderr = serve_workers
    deadline = time.monotonic() + 60
    while NOTICE not in stderr.read_text(errors="replace"):
        assert process.poll() is None, stderr.read_text(errors="replace")
        assert time.monotonic() < deadline, "no notice within 60 s"
        time.sleep(0.1)

    [line] = [line for line in stderr.read_text().splitlines() if NOTICE in line]
    assert line == (
        "rate limits: the 2 workers share them through the database, every 100 ms"
        " (THOTBOT_REDIS_URL is unset)"
    )


@pytest.mark.parametrize(
    ("workers", "redis", "says"),
    [(1, None, False), (2, None, True), (8, None, True), (2, "redis://127.0.0.1:6379/0", False)],
)
def test_rate_limits_notice(workers: int, redis: str | None, says: bool) -> None:
    settings = load_settings(redis_url=redis)
    assert (_rate_limits_notice(workers, settings) is not None) is says


def test_bad_trusted_proxies_stop_serve(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("THOTBOT_TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal")

    assert main(["serve", "--port", str(free_port())]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "thotbot: error: THOTBOT_TRUSTED_PROXIES: 'proxy.internal' is not an IP address or CIDR,"
        " such as 10.0.0.0/8\n"
    )
