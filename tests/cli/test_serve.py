"""`thotbot serve`: what it says at start, and the settings that stop it before it serves."""

from __future__ import annotations

import contextlib
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
from thotbot.hugepages import _huge_pages_available, restart_with_huge_pages, tunables_with_huge_pages

THOTBOT = str(Path(sys.executable).parent / "thotbot")
NOTICE = "rate limits: the 2 workers share them through the database"


@pytest.fixture
def serve_workers(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`thotbot serve --workers 2` without Redis, its stderr in a file; stopped afterwards."""
    with _serve(tmp_path, "--workers", "2") as served:
        yield served


@contextlib.contextmanager
def _serve(tmp_path: Path, *args: str, **environ: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THOTBOT_", "GLIBC_"))}
    env["THOTBOT_DATABASE_URL"] = f"sqlite:///{tmp_path / 'thotbot.db'}"
    env.update(environ)
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as out:
        process = subprocess.Popen(
            [THOTBOT, "serve", "--port", str(free_port()), *args],
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


def _wait_for(text: str, process: subprocess.Popen[bytes], stderr: Path, times: int = 1) -> None:
    deadline = time.monotonic() + 60
    while stderr.read_text(errors="replace").count(text) < times:
        assert process.poll() is None, stderr.read_text(errors="replace")
        assert time.monotonic() < deadline, f"no {text!r} {times} times within 60 s"
        time.sleep(0.1)


def test_workers_without_redis_say_they_share_the_limits_through_the_database(
    serve_workers: tuple[subprocess.Popen[bytes], Path],
) -> None:
    process, stderr = serve_workers
    _wait_for(NOTICE, process, stderr)

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


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def _workers(pid: int) -> list[int]:
    """uvicorn's worker processes under ``pid`` (not multiprocessing's resource tracker)."""
    tasks = Path(f"/proc/{pid}/task")
    children = [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _huge_pages(pid: int) -> int:
    """kB of the process's memory on transparent huge pages."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    raise AssertionError("no AnonHugePages line")


@pytest.mark.skipif(not _huge_pages_available(), reason="no glibc 2.35+ with transparent huge pages here")
def test_serve_starts_again_with_huge_pages_for_malloc_and_its_workers_have_them(tmp_path: Path) -> None:
    with _serve(tmp_path, "--workers", "2") as (process, stderr):
        _wait_for(NOTICE, process, stderr)
        # The same process (execv keeps its id), started again once; its heap is on huge pages.
        assert _environ(process.pid)["_THOTBOT_HUGE_PAGES_RESTARTED"] == "1"
        assert _huge_pages(process.pid) > 0
        # The workers are new processes of the same environment: their heaps are too, once up.
        _wait_for("Application startup complete", process, stderr, times=2)
        workers = _workers(process.pid)
        assert len(workers) == 2, stderr.read_text()
        assert all(_huge_pages(worker) > 0 for worker in workers)
        # Said once: the first process said nothing before it started again.
        assert stderr.read_text().count("Thotbot ") == 1


def test_a_worker_slow_to_start_on_a_busy_machine_is_waited_for_not_killed(tmp_path: Path) -> None:
    # Each worker's interpreter takes 6 s before it can answer the parent's health check, as on a
    # machine busy enough (CI's did); with uvicorn's 5 s the parent killed it and started another.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import time\nif b'spawn_main' in open('/proc/self/cmdline', 'rb').read():\n    time.sleep(6)\n"
    )
    with _serve(tmp_path, "--workers", "2", PYTHONPATH=str(site)) as (process, stderr):
        _wait_for("Application startup complete", process, stderr, times=2)
        log = stderr.read_text()
        assert "died" not in log
        assert log.count("Started server process") == 2
        assert len(_workers(process.pid)) == 2


@pytest.mark.parametrize(
    "tunables",
    ["glibc.malloc.hugetlb=0", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0"],
)
def test_an_operators_huge_pages_tunable_is_left_alone(tmp_path: Path, tunables: str) -> None:
    with _serve(tmp_path, GLIBC_TUNABLES=tunables) as (process, stderr):
        _wait_for("Thotbot ", process, stderr)
        # Not started again (glibc itself rewrites the variable as /proc shows it).
        assert "_THOTBOT_HUGE_PAGES_RESTARTED" not in _environ(process.pid)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("", "glibc.malloc.hugetlb=1"),
        ("glibc.malloc.arena_max=2", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"),
        ("glibc.malloc.hugetlb_extra=1", "glibc.malloc.hugetlb_extra=1:glibc.malloc.hugetlb=1"),
        ("glibc.malloc.hugetlb=0", None),
        ("glibc.malloc.hugetlb=2", None),
        ("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1", None),
    ],
)
def test_tunables_with_huge_pages(before: str, after: str | None) -> None:
    environ = {"GLIBC_TUNABLES": before} if before else {}
    assert tunables_with_huge_pages(environ) == after


@pytest.mark.skipif(not _huge_pages_available(), reason="no glibc 2.35+ with transparent huge pages here")
def test_a_restart_that_cannot_start_serves_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[list[str]] = []

    def cannot(path: str, argv: list[str]) -> None:
        tried.append(argv)
        raise FileNotFoundError(path)

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.setattr(os, "execv", cannot)
    before = dict(os.environ)
    restart_with_huge_pages()  # returns, where it would have replaced this process
    assert tried == [sys.orig_argv]
    assert dict(os.environ) == before
    monkeypatch.setattr(sys, "orig_argv", [])
    restart_with_huge_pages()  # an embedded interpreter: nothing to start again
    assert len(tried) == 1
    assert dict(os.environ) == before
