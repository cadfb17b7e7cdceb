"""What the benchmarks share: free loopback ports, the thotbot CLI, wrk, a process's CPU time, a
temporary database."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = [
    "PG_ADMIN_URL",
    "cpu_seconds",
    "free_port",
    "keys_script",
    "peak_rss_mb",
    "pinned",
    "private_file",
    "run_wrk",
    "run_wrk_script",
    "temporary_database",
    "thotbot_cli",
]

#: Where the benchmarks make (and drop) their PostgreSQL databases.
PG_ADMIN_URL = os.environ.get("THOTBOT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
#: wrk's latency units, in milliseconds.
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def thotbot_cli(args: list[str], env: dict[str, str], workdir: Path, stdin: str = "") -> str:
    """Run `thotbot ARGS` against the bench's database; its stdout, or exit the bench saying why."""
    done = subprocess.run(
        [sys.executable, "-m", "thotbot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        timeout=60,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: thotbot {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of a process so far, from /proc (Linux); None elsewhere."""
    return _stat_cpu_seconds(f"/proc/{pid}/stat")


def main_thread_cpu_seconds(pid: int) -> float | None:
    """CPU time so far of a process's main thread (Linux); None elsewhere.

    In `thotbot serve` the main thread runs the event loop: the process's time less this one is
    the work done beside it, in threads that come and go (the usage and request-log flushes, the
    rate-limit sync, the key lookups of cache misses).
    """
    return _stat_cpu_seconds(f"/proc/{pid}/task/{pid}/stat")


def _stat_cpu_seconds(path: str) -> float | None:
    """utime + stime of a /proc stat file, in seconds; None when it cannot be read."""
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pinned(cpu: int | None) -> list[str]:
    """The prefix that runs a command on one CPU (`taskset -c N`), or nothing when ``cpu`` is None."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def peak_rss_mb(pid: int) -> float | None:
    """A process's peak resident memory so far (VmHWM, Linux), in MB; None when unknown."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s*(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else None


def private_file(path: Path, text: str) -> None:
    """Write ``text`` to a file only the current user can read, made so before anything is written."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def run_wrk(
    url: str, headers: Mapping[str, str], duration: float, connections: int, script: Path
) -> dict[str, float]:
    """One wrk run with fixed headers: requests/s, non-2xx answers, socket errors and latency percentiles."""
    # The key goes in a script file only we can read, never on a command line that `ps` shows.
    lines = [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    private_file(script, "\n".join(lines) + "\n")
    return run_wrk_script(url, script, duration, connections)


def keys_script(script: Path, secrets_file: Path, path: str, user_agent: str) -> None:
    """A wrk script that sends ``GET path`` with the keys of ``secrets_file`` (one a line) round-robin.

    The keys are read by wrk itself when its thread starts (``init``): they are in no command line
    and not in this script, which names only the file (0600, like the script).
    """
    lua = f"""-- Written by bench/_common.py: GET {path} with each key of a file in turn.
local keys, count, turn = {{}}, 0, 0
local path, user_agent = {json.dumps(path)}, {json.dumps(user_agent)}

function init(args)
  for line in io.lines({json.dumps(str(secrets_file))}) do
    if #line > 0 then
      count = count + 1
      keys[count] = "Bearer " .. line
    end
  end
  if count == 0 then error("no key in the secrets file") end
end

function request()
  turn = turn % count + 1
  return wrk.format("GET", path, {{["Authorization"] = keys[turn], ["User-Agent"] = user_agent}})
end
"""
    private_file(script, lua)


def run_wrk_script(
    url: str, script: Path, duration: float, connections: int, cpu: int | None = None
) -> dict[str, float]:
    """One `wrk --latency` run of ``script`` (on CPU ``cpu`` when given): requests/s, non-2xx answers,
    socket errors, and the 50th and 99th latency percentiles in ms."""
    done = subprocess.run(
        [
            *pinned(cpu),
            *("wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "-s", str(script), url),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 30,
    )
    rate = re.search(r"Requests/sec:\s*([\d.]+)", done.stdout)
    if rate is None:
        raise SystemExit(f"bench: cannot read wrk's output:\n{done.stdout}{done.stderr}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", done.stdout)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", done.stdout)
    return {
        "requests_per_s": float(rate.group(1)),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "errors": sum(int(n) for n in errors.groups()) if errors else 0,
        **{f"p{p}_ms": _percentile_ms(done.stdout, p) for p in (50, 99)},
    }


def _percentile_ms(output: str, percentile: int) -> float:
    """A row of wrk's "Latency Distribution" table ("     99%    4.12ms"), in milliseconds."""
    table = output.partition("Latency Distribution")[2]
    found = re.search(rf"^\s*{percentile}(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", table, re.MULTILINE)
    if found is None:
        raise SystemExit(f"bench: no {percentile}th percentile in wrk's output:\n{output}")
    return float(found.group(1)) * _UNITS_MS[found.group(2)]


@contextlib.contextmanager
def temporary_database(backend: str, workdir: Path) -> Iterator[str]:
    """A SQLite file in ``workdir``, or a new PostgreSQL database dropped on the way out: its URL."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'thotbot.db'}"
        return
    import psycopg

    name = f"thotbot_bench_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise SystemExit(f"bench: PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}") from None
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
