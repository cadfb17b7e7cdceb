"""Requests/s on GET /v1/version: a bare Starlette app beside the real Thotbot, one uvicorn worker each.

    python bench/auth_throughput.py [--duration 5] [--runs 3] [--connections 32] [--client auto|wrk|python]

Both servers listen on free loopback ports with the same uvicorn options (httptools, uvloop, no
access log, one worker). Thotbot runs as `thotbot serve` does, everything on (key cache, last-used
recorder, rate limiter with a limit no run reaches, its own redacted access log, written to a file),
on a temporary SQLite database with an account and a key made by the CLI. The load comes from `wrk`
when it is installed, else from a small asyncio client in a second process; runs alternate between
the two servers so that a busy neighbour on the machine slows both alike. Prints each run, the
medians and the ratio Thotbot / bare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _common import cpu_seconds, free_port, run_wrk, thotbot_cli

TARGET = 0.85
USER_AGENT = "thotbot-bench/1.0 (bench/auth_throughput.py; loopback benchmark)"
PATH = "/v1/version"
# What `thotbot serve` gives uvicorn, spelled out: "auto" resolves to these when they are installed.
UVICORN_OPTIONS: dict[str, object] = {
    "http": "httptools",
    "loop": "uvloop",
    "access_log": False,
    "log_config": None,
    "server_header": False,
    "workers": 1,
}


@dataclass
class Result:
    requests_per_s: float
    non_2xx: int
    errors: int
    #: The server's own CPU time per answered request: unlike requests/s, it hardly moves when
    #: another process on the machine takes CPU away during the run.
    cpu_us: float | None = None


@dataclass
class Server:
    name: str
    url: str
    headers: dict[str, str]
    pid: int


# The bare app: the same JSON on the same path, nothing in front of it.


def bare_app() -> object:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from thotbot import __version__

    body = {"version": __version__, "api": "v1"}

    async def version(request: Request) -> Response:
        return JSONResponse(body)

    return Starlette(routes=[Route(PATH, version, methods=["GET"])])


def serve_bare(port: int) -> None:
    import uvicorn

    uvicorn.run(bare_app(), host="127.0.0.1", port=port, **UVICORN_OPTIONS)  # type: ignore[arg-type]


# The load generator used when wrk is absent: keep-alive connections, one request in flight on each.


async def _connection(host: str, port: int, request: bytes, deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await reader.readexactly(int(match.group(1)) if match else 0)
            counts[0] += 1
            if not 200 <= status < 300:
                counts[1] += 1
    except (OSError, asyncio.IncompleteReadError):
        counts[2] += 1
    finally:
        writer.close()


async def _load(config: dict[str, object]) -> dict[str, float]:
    host, port = str(config["host"]), int(str(config["port"]))
    headers = "".join(f"{k}: {v}\r\n" for k, v in dict(config["headers"]).items())  # type: ignore[call-overload]
    request = f"GET {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}\r\n".encode("latin-1")
    counts = [0, 0, 0]  # requests, non-2xx, errors
    started = time.perf_counter()
    deadline = started + float(str(config["duration"]))
    connections = int(str(config["connections"]))
    await asyncio.gather(*(_connection(host, port, request, deadline, counts) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return {"requests_per_s": counts[0] / elapsed, "non_2xx": counts[1], "errors": counts[2]}


def run_load_from_stdin() -> None:
    """The second process: reads its settings (the key among them) on stdin, prints JSON."""
    config = json.loads(sys.stdin.read())
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(json.dumps(asyncio.run(_load(config))))


# Measuring.


def measure(server: Server, duration: float, connections: int, client: str, workdir: Path) -> Result:
    cpu_before = cpu_seconds(server.pid)
    result = _measure(server, duration, connections, client, workdir)
    cpu_after = cpu_seconds(server.pid)
    if cpu_before is not None and cpu_after is not None and result.requests_per_s:
        result.cpu_us = (cpu_after - cpu_before) / (result.requests_per_s * duration) * 1e6
    return result


def _measure(server: Server, duration: float, connections: int, client: str, workdir: Path) -> Result:
    if client == "wrk":
        return _measure_wrk(server, duration, connections, workdir)
    host, port = server.url.removeprefix("http://").split(":")
    config = {
        "host": host,
        "port": int(port),
        "headers": server.headers,
        "duration": duration,
        "connections": connections,
    }
    done = subprocess.run(
        [sys.executable, __file__, "--load"],
        input=json.dumps(config).encode(),
        capture_output=True,
        check=True,
        timeout=duration + 30,
    )
    data = json.loads(done.stdout)
    return Result(data["requests_per_s"], data["non_2xx"], data["errors"])


def _measure_wrk(server: Server, duration: float, connections: int, workdir: Path) -> Result:
    script = workdir / f"{server.name.split()[0].lower()}.lua"
    data = run_wrk(server.url + PATH, server.headers, duration, connections, script)
    return Result(data["requests_per_s"], int(data["non_2xx"]), int(data["errors"]))


# Starting and stopping the servers.


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench: the server for {url} exited with status {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            # Any answer means it is serving; /v1/version without a key is a 401 on Thotbot.
            httpx.get(url + PATH, timeout=1)
            return
        time.sleep(0.1)
    raise SystemExit(f"bench: {url} did not answer within {timeout:g} s")


def thotbot_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THOTBOT_")}
    env.update(
        THOTBOT_DATABASE_URL=f"sqlite:///{workdir / 'thotbot.db'}",
        # Rate limiting stays on, with limits no run reaches: it measures the limiter, not a 429.
        THOTBOT_RATE_LIMIT="1000000000/minute",
        THOTBOT_ANON_RATE_LIMIT="1000000000/minute",
        THOTBOT_LOG_FORMAT="text",
    )
    return env


@contextlib.contextmanager
def started(
    name: str, command: list[str], env: dict[str, str], workdir: Path, port: int
) -> Iterator[tuple[str, int]]:
    log = (workdir / f"{name}.log").open("wb")
    process = subprocess.Popen(command, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        # One worker: uvicorn serves in this very process, so its CPU time is the server's.
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# The report.


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, {platform.system()}"


def report(results: dict[str, list[Result]]) -> None:
    runs = max(len(r) for r in results.values())
    header = f"{'requests/s':<16}" + "".join(f"{f'run {i + 1}':>10}" for i in range(runs)) + f"{'median':>10}"
    print(header)
    print("-" * len(header))
    rps, cpu = {}, {}
    for name, rows in results.items():
        rps[name] = statistics.median(r.requests_per_s for r in rows)
        print(f"{name:<16}" + "".join(f"{r.requests_per_s:>10.0f}" for r in rows) + f"{rps[name]:>10.0f}")
    if all(r.cpu_us is not None for rows in results.values() for r in rows):
        print(f"\n{'server CPU/req':<16}" + " " * 10 * runs + f"{'median':>10}")
        for name, rows in results.items():
            cpu[name] = statistics.median(r.cpu_us or 0.0 for r in rows)
            cells = "".join(f"{f'{r.cpu_us:.1f} us':>10}" for r in rows)
            print(f"{name:<16}{cells}{f'{cpu[name]:.1f} us':>10}")
    ratio = rps["Thotbot"] / rps["bare Starlette"]
    verdict = "meets" if ratio >= TARGET else "is BELOW"
    print(f"\nThotbot / bare = {ratio:.1%} of the requests/s; it {verdict} the {TARGET:.0%} target.")
    if cpu:
        print(
            f"By server CPU time per request (what a saturated worker can give): "
            f"{cpu['bare Starlette'] / cpu['Thotbot']:.1%}; Thotbot spends "
            f"{cpu['Thotbot'] - cpu['bare Starlette']:.1f} us more per request."
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Requests/s on /v1/version: bare Starlette beside Thotbot.")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    parser.add_argument("--runs", type=int, default=3, help="runs per server; the median counts (default 3)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (default 32)")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return
    if args.load:
        run_load_from_stdin()
        return
    if args.duration <= 0 or args.runs < 1 or args.connections < 1:
        parser.error("--duration, --runs and --connections must be positive")
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    elif client == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk), or use --client python")
    for module in ("httptools", "uvloop"):
        __import__(module)  # uvicorn's "auto" picks them only when they are installed

    load_name = "wrk -t1" if client == "wrk" else "an asyncio client in a second process"
    print(machine())
    print(f"load: {load_name}, {args.connections} connections, {args.runs} runs x {args.duration:g} s")
    with tempfile.TemporaryDirectory(prefix="thotbot-bench-") as tmp:
        bench(Path(tmp), args.duration, args.runs, args.connections, client)


def bench(workdir: Path, duration: float, runs: int, connections: int, client: str) -> None:
    env = thotbot_env(workdir)
    email = "bench@example.com"
    thotbot_cli(["users", "create", email, "--password-stdin"], env, workdir, secrets.token_urlsafe(24))
    raw_key = thotbot_cli(["keys", "create", "--user", email, "--name", "bench"], env, workdir)
    bare_port, thot_port = free_port(), free_port()
    bare_cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(bare_port)]
    thot_cmd = [sys.executable, "-m", "thotbot", "serve", "--port", str(thot_port), "--workers", "1"]
    with (
        started("bare", bare_cmd, env, workdir, bare_port) as (bare_url, bare_pid),
        started("thotbot", thot_cmd, env, workdir, thot_port) as (thot_url, thot_pid),
    ):
        servers = [
            Server("bare Starlette", bare_url, {"User-Agent": USER_AGENT}, bare_pid),
            Server(
                "Thotbot",
                thot_url,
                {"Authorization": f"Bearer {raw_key}", "User-Agent": USER_AGENT},
                thot_pid,
            ),
        ]
        results: dict[str, list[Result]] = {s.name: [] for s in servers}
        for server in servers:  # warm-up: caches, allocator, the key's first (database) lookup
            measure(server, min(duration, 1.0), connections, client, workdir)
        for _ in range(runs):
            for server in servers:
                result = measure(server, duration, connections, client, workdir)
                if result.non_2xx or result.errors:
                    log = (workdir / "thotbot.log").read_text(errors="replace").splitlines()[-5:]
                    raise SystemExit(
                        f"bench: {server.name} answered {result.non_2xx} non-2xx responses and had "
                        f"{result.errors} socket errors; Thotbot's log ends with:\n" + "\n".join(log)
                    )
                results[server.name].append(result)
    print()
    report(results)


if __name__ == "__main__":
    main()
