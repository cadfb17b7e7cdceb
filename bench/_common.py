"""What the benchmarks share: free loopback ports, the thotbot CLI, a process's CPU time."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

__all__ = ["cpu_seconds", "free_port", "thotbot_cli"]


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
