"""What the benchmarks share: free loopback ports, the thotbot CLI, wrk, a process's CPU time."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["cpu_seconds", "free_port", "run_wrk", "thotbot_cli"]


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
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str, headers: Mapping[str, str], duration: float, connections: int, script: Path
) -> dict[str, float]:
    """One wrk run: requests/s, non-2xx answers and socket errors."""
    # The key goes in a script file only we can read, never on a command line that `ps` shows.
    script.touch(mode=0o600)
    lines = [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "-s", str(script), url],
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
    }
