"""Requests/s and latency on GET /v1/version: bare Starlette, a FastAPI app with HTTPBearer, and Thotbot.

    python bench/auth_throughput.py [--duration 5] [--runs 3] [--connections 32] [--client auto|wrk|python]
                                    [--no-pin] [--database sqlite|postgresql]
                                    [--keys-in-store 1] [--keys-in-use 1]

Three servers listen on free loopback ports with the same uvicorn options (httptools, uvloop, no
access log, one worker):

- bare Starlette: one route answering the JSON of Thotbot's /v1/version, no authentication;
- FastAPI with ``fastapi.security.HTTPBearer`` as a dependency, as most users would write it
  (bench/fastapi_peer.py): it hashes the token with SHA-256 and looks it up in a dict of the known
  digests, loaded from the database at start (401 otherwise), and answers the same JSON;
- Thotbot as `thotbot serve` runs it, everything on (key cache, usage recording, rate limiter with
  a limit no run reaches, its own redacted access log, written to a file).

The database (a temporary SQLite file, or a temporary PostgreSQL database on 127.0.0.1:5432 that is
dropped afterwards) gets its schema from `thotbot db upgrade`, one account from `thotbot users
create` and ``--keys-in-store`` keys from bench/bulk_keys.py. Every request carries one of the first
``--keys-in-use`` keys, in turn, and a descriptive User-Agent; the three servers get the same
requests. Before the measured runs every key in use is sent once to Thotbot (so its cache holds
what it can) and each server gets a 1 s warm-up; then the runs alternate between the servers.

When `taskset` exists and the machine has at least 2 CPUs, each server runs pinned to CPU 0 and the
load generator to CPU 1 (``--no-pin``: neither). The load comes from `wrk --latency` when it is
installed, else from a small asyncio client in a second process. Prints the machine, each run, and
per server the median requests/s, its ratio to bare, p50 and p99 latency, the server's CPU time per
request (from /proc) and its peak resident memory (VmHWM) after the runs. Keys never appear on a
command line: wrk reads them from a file only the current user can read, the Python client from its
standard input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from _common import (
    cpu_seconds,
    free_port,
    keys_script,
    peak_rss_mb,
    pinned,
    run_wrk_script,
    temporary_database,
)
from bulk_keys import prepare, write_secrets

from thotbot.hugepages import tunables_with_huge_pages

TARGET = 0.85
USER_AGENT = "thotbot-bench/1.0 (bench/auth_throughput.py; loopback benchmark)"
PATH = "/v1/version"
EMAIL = "bench@example.com"
BARE, FASTAPI, THOTBOT = "bare Starlette", "FastAPI HTTPBearer", "Thotbot"
#: CPU for the servers, CPU for the load generator, when pinned.
SERVER_CPU, LOAD_CPU = 0, 1
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
    p50_ms: float
    p99_ms: float
    #: The server's own CPU time per answered request: unlike requests/s, it hardly moves when
    #: another process on the machine takes CPU away during the run.
    cpu_us: float | None = None


@dataclass
class Server:
    name: str
    url: str
    pid: int
    process: subprocess.Popen[bytes] | None = None


def stop_for_cpu(server: Server) -> float | None:
    """Stop a server with SIGTERM, as an operator would, and return the CPU time (user and system,
    every thread) it used in its whole life: what it did in the background between and after the
    runs (usage flushes, the request log, rate-limit sharing, and the last flush at shutdown)
    counts too, which the per-run figures, read from /proc while the load runs, leave out."""
    process = server.process
    if process is None or process.poll() is not None:
        return None
    process.terminate()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    except ChildProcessError:
        return None
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Options:
    duration: float = 5.0
    runs: int = 3
    connections: int = 32
    client: str = "wrk"
    pin: bool = True


@dataclass
class Summary:
    """One server at one setting: the medians of its runs."""

    name: str
    requests_per_s: float
    vs_bare: float
    p50_ms: float
    p99_ms: float
    cpu_us: float | None
    peak_rss_mb: float | None
    runs: list[Result] = field(default_factory=list)
    #: Thotbot only: its CPU time from before the first use of each key in use to its exit (SIGTERM,
    #: after the last run), background work included, over every request it served meanwhile.
    cpu_all_us: float | None = None


@dataclass
class Store:
    """A database with one account and its keys: the first ``len(keys)`` raw keys kept for the load."""

    url: str
    backend: str
    keys_in_store: int
    keys: list[str]
    seconds_to_create: float


# The two peers: the same JSON on the same path.


def _body() -> dict[str, str]:
    from thotbot import __version__

    return {"version": __version__, "api": "v1"}


def bare_app() -> object:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    body = _body()

    async def version(request: Request) -> Response:
        return JSONResponse(body)

    return Starlette(routes=[Route(PATH, version, methods=["GET"])])


def serve(kind: str, port: int) -> None:
    import uvicorn

    if kind == "bare":
        app = bare_app()
    else:
        import fastapi_peer

        app = fastapi_peer.create_app(fastapi_peer.known_digests(os.environ["THOTBOT_DATABASE_URL"]))
    uvicorn.run(app, host="127.0.0.1", port=port, **UVICORN_OPTIONS)  # type: ignore[arg-type]


# The load generator used when wrk is absent, and for the warm-up pass over every key in use:
# keep-alive connections, one request in flight on each, the keys taken in turn.


async def _connection(
    host: str,
    port: int,
    requests: Iterator[bytes],
    deadline: float,
    counts: list[int],
    latencies: list[float],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for request in requests:
            if time.perf_counter() >= deadline:
                break
            sent = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await reader.readexactly(int(match.group(1)) if match else 0)
            latencies.append(time.perf_counter() - sent)
            counts[0] += 1
            if not 200 <= status < 300:
                counts[1] += 1
    except (OSError, asyncio.IncompleteReadError):
        counts[2] += 1
    finally:
        writer.close()


async def _load(config: dict[str, object]) -> dict[str, float]:
    host, port = str(config["host"]), int(str(config["port"]))
    keys = list(config["keys"])  # type: ignore[call-overload]
    heads = [
        f"GET {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"User-Agent: {USER_AGENT}\r\n\r\n".encode("latin-1")
        for key in keys
    ]
    # Once: every key exactly once, spread over the connections (the warm-up); else in turn until the end.
    requests = iter(heads) if config.get("once") else itertools.cycle(heads)
    counts = [0, 0, 0]  # requests, non-2xx, errors
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + float(str(config["duration"]))
    connections = int(str(config["connections"]))
    await asyncio.gather(
        *(_connection(host, port, requests, deadline, counts, latencies) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "requests": counts[0],
        "requests_per_s": counts[0] / elapsed,
        "non_2xx": counts[1],
        "errors": counts[2],
        "p50_ms": quantiles[49] * 1000,
        "p99_ms": quantiles[98] * 1000,
    }


def run_load_from_stdin() -> None:
    """The second process: reads its settings (the keys among them) on stdin, prints JSON."""
    config = json.loads(sys.stdin.read())
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(json.dumps(asyncio.run(_load(config))))


def python_load(
    url: str, keys: list[str], duration: float, connections: int, cpu: int | None, *, once: bool = False
) -> dict[str, float]:
    host, port = url.removeprefix("http://").split(":")
    config = {
        "host": host,
        "port": int(port),
        "keys": keys,
        "duration": duration,
        "connections": connections,
        "once": once,
    }
    done = subprocess.run(
        [*pinned(cpu), sys.executable, __file__, "--load"],
        input=json.dumps(config).encode(),
        capture_output=True,
        check=True,
        timeout=duration + 30,
    )
    data: dict[str, float] = json.loads(done.stdout)
    return data


# Measuring.


@dataclass
class Load:
    """How the requests are sent: the client, its CPU, the keys (and wrk's script reading them)."""

    client: str
    cpu: int | None
    keys: list[str]
    script: Path


def measure(server: Server, load: Load, duration: float, connections: int) -> Result:
    cpu_before = cpu_seconds(server.pid)
    if load.client == "wrk":
        data = run_wrk_script(server.url + PATH, load.script, duration, connections, load.cpu)
    else:
        data = python_load(server.url, load.keys, duration, connections, load.cpu)
    cpu_after = cpu_seconds(server.pid)
    result = Result(
        data["requests_per_s"], int(data["non_2xx"]), int(data["errors"]), data["p50_ms"], data["p99_ms"]
    )
    if cpu_before is not None and cpu_after is not None and result.requests_per_s:
        result.cpu_us = (cpu_after - cpu_before) / (result.requests_per_s * duration) * 1e6
    return result


def touch_every_key(server: Server, load: Load, connections: int) -> str:
    """Send each key in use once (a cache miss each on a fresh server); fails on any non-2xx."""
    started = time.perf_counter()
    data = python_load(server.url, load.keys, 60 + len(load.keys) / 100, connections, load.cpu, once=True)
    elapsed = time.perf_counter() - started
    if data["non_2xx"] or data["errors"] or data["requests"] != len(load.keys):
        raise SystemExit(
            f"bench: the warm-up sent {data['requests']:.0f} of {len(load.keys)} keys to {server.name}: "
            f"{data['non_2xx']:.0f} non-2xx answers, {data['errors']:.0f} socket errors"
        )
    return f"warm-up: every key in use ({len(load.keys):,}) sent once to {server.name} in {elapsed:.1f} s"


# Starting and stopping the servers.


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
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


def thotbot_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THOTBOT_")}
    env.update(
        THOTBOT_DATABASE_URL=database_url,
        # Rate limiting stays on, with limits no run reaches: it measures the limiter, not a 429.
        THOTBOT_RATE_LIMIT="1000000000/minute",
        THOTBOT_ANON_RATE_LIMIT="1000000000/minute",
        THOTBOT_LOG_FORMAT="text",
    )
    # Every server gets the heap `thotbot serve` gives itself, glibc's malloc on transparent huge
    # pages (src/thotbot/hugepages.py; then it does not start again): the servers are compared on
    # their code, not on their malloc. Unless the caller set the tunable: then all get theirs.
    tunables = tunables_with_huge_pages(env)
    if tunables is not None:
        env["GLIBC_TUNABLES"] = tunables
    return env


@contextlib.contextmanager
def started(name: str, command: list[str], env: dict[str, str], workdir: Path, port: int) -> Iterator[Server]:
    log = (workdir / f"{name.split()[0].lower()}.log").open("wb")
    process = subprocess.Popen(command, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        # One worker: uvicorn serves in this very process (taskset execs it), so its CPU is the server's.
        yield Server(name, url, process.pid, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# The database and its keys.


@contextlib.contextmanager
def key_store(backend: str, keys_in_store: int, keep: int, workdir: Path) -> Iterator[Store]:
    """A temporary database: the schema, one account made by the CLI, ``keys_in_store`` keys."""
    with temporary_database(backend, workdir) as url:
        started_at = time.perf_counter()
        _, kept = prepare(url, EMAIL, keys_in_store, keep, workdir)
        yield Store(url, backend, keys_in_store, kept, time.perf_counter() - started_at)


# One setting: the three servers, alternating run by run.


def run_point(store: Store, keys_in_use: int, options: Options, workdir: Path) -> list[Summary]:
    """Measure the three servers with the first ``keys_in_use`` keys of ``store``; their summaries."""
    server_cpu, load_cpu = (SERVER_CPU, LOAD_CPU) if options.pin else (None, None)
    secrets_file, script = workdir / "keys.txt", workdir / "keys.lua"
    keys = store.keys[:keys_in_use]
    write_secrets(secrets_file, keys)
    keys_script(script, secrets_file, PATH, USER_AGENT)
    load = Load(options.client, load_cpu, keys, script)
    env = thotbot_env(store.url)
    ports = {name: free_port() for name in (BARE, FASTAPI, THOTBOT)}
    peer = [*pinned(server_cpu), sys.executable, str(Path(__file__).resolve()), "--serve"]
    commands = {
        BARE: [*peer, "bare", str(ports[BARE])],
        FASTAPI: [*peer, "fastapi", str(ports[FASTAPI])],
        THOTBOT: [
            *pinned(server_cpu),
            *(sys.executable, "-m", "thotbot", "serve", "--port", str(ports[THOTBOT]), "--workers", "1"),
        ],
    }
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(started(n, commands[n], env, workdir, ports[n])) for n in commands]
        # Counted whole from here: the first use of each key in use (a miss each) and its bookkeeping.
        cpu_at_start = cpu_seconds(servers[-1].pid)
        print(touch_every_key(servers[-1], load, options.connections), flush=True)
        warm_up = min(options.duration, 1.0)
        served = float(len(keys))
        for server in servers:  # warm-up: caches, allocator
            result = measure(server, load, warm_up, options.connections)
            if server.name == THOTBOT:
                served += result.requests_per_s * warm_up
        results: dict[str, list[Result]] = {s.name: [] for s in servers}
        for _ in range(options.runs):
            for server in servers:
                result = measure(server, load, options.duration, options.connections)
                if result.non_2xx or result.errors:
                    log = (workdir / f"{server.name.split()[0].lower()}.log").read_text(errors="replace")
                    raise SystemExit(
                        f"bench: {server.name} answered {result.non_2xx} non-2xx responses and had "
                        f"{result.errors} socket errors; its log ends with:\n"
                        + "\n".join(log.splitlines()[-5:])
                    )
                results[server.name].append(result)
        rss = {s.name: peak_rss_mb(s.pid) for s in servers}
        lifetime = stop_for_cpu(servers[-1])
    summaries = summarise(results, rss)
    served += sum(r.requests_per_s * options.duration for r in results[THOTBOT])
    if lifetime is not None and cpu_at_start is not None and served:
        next(s for s in summaries if s.name == THOTBOT).cpu_all_us = (lifetime - cpu_at_start) / served * 1e6
    return summaries


def summarise(results: dict[str, list[Result]], rss: dict[str, float | None]) -> list[Summary]:
    def median(values: Iterable[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    bare_rps = statistics.median(r.requests_per_s for r in results[BARE])
    summaries = []
    for name, rows in results.items():
        rps = statistics.median(r.requests_per_s for r in rows)
        summaries.append(
            Summary(
                name=name,
                requests_per_s=rps,
                vs_bare=rps / bare_rps,
                p50_ms=statistics.median(r.p50_ms for r in rows),
                p99_ms=statistics.median(r.p99_ms for r in rows),
                cpu_us=median(r.cpu_us for r in rows),
                peak_rss_mb=rss[name],
                runs=rows,
            )
        )
    return summaries


# The report.


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def machine(pin: bool) -> dict[str, object]:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": {d: _version(d) for d in ("uvicorn", "starlette", "fastapi", "uvloop", "httptools")},
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "pinned": f"servers on CPU {SERVER_CPU}, load generator on CPU {LOAD_CPU}" if pin else "no",
        # As thotbot_env gives it to every server: one place decides.
        "heap": "GLIBC_TUNABLES=" + thotbot_env("")["GLIBC_TUNABLES"],
    }


def print_machine(info: dict[str, object]) -> None:
    packages = ", ".join(f"{k} {v}" for k, v in dict(info["packages"]).items())  # type: ignore[call-overload]
    load = " ".join(str(x) for x in info["load_average"])  # type: ignore[attr-defined]
    print(f"machine: {info['cpus']} CPUs ({info['cpu']}), {info['system']}, Python {info['python']}")
    print(f"packages: {packages}")
    print(f"load average: {load}; pinned: {info['pinned']}")
    print(f"every server's heap: {info.get('heap', 'as started')}")


def can_pin() -> bool:
    """taskset exists and this process may run on CPUs 0 and 1."""
    return shutil.which("taskset") is not None and {SERVER_CPU, LOAD_CPU} <= os.sched_getaffinity(0)


def report(summaries: list[Summary]) -> None:
    runs = max(len(s.runs) for s in summaries)
    header = f"{'requests/s':<20}" + "".join(f"{f'run {i + 1}':>10}" for i in range(runs)) + f"{'median':>10}"
    print(header)
    print("-" * len(header))
    for s in summaries:
        cells = "".join(f"{r.requests_per_s:>10.0f}" for r in s.runs)
        print(f"{s.name:<20}{cells}{s.requests_per_s:>10.0f}")
    print()
    columns = ("req/s", "vs bare", "p50", "p99", "CPU/req", "peak RSS")
    header = f"{'median of runs':<20}" + "".join(f"{c:>{9 if i < 2 else 10}}" for i, c in enumerate(columns))
    print(header)
    print("-" * len(header))
    for s in summaries:
        cpu = f"{s.cpu_us:.1f} us" if s.cpu_us is not None else "?"
        rss = f"{s.peak_rss_mb:.0f} MB" if s.peak_rss_mb is not None else "?"
        print(
            f"{s.name:<20}{s.requests_per_s:>9.0f}{s.vs_bare:>9.1%}"
            f"{f'{s.p50_ms:.2f} ms':>10}{f'{s.p99_ms:.2f} ms':>10}{cpu:>10}{rss:>10}"
        )
    by_name = {s.name: s for s in summaries}
    bare, thotbot = by_name[BARE], by_name[THOTBOT]
    verdict = "meets" if thotbot.vs_bare >= TARGET else "is BELOW"
    print(
        f"\nThotbot / bare = {thotbot.vs_bare:.1%} of the requests/s; it {verdict} the {TARGET:.0%} target."
    )
    if bare.cpu_us and thotbot.cpu_us:
        fastapi = by_name[FASTAPI].cpu_us
        against = "" if not fastapi else f" ({fastapi - bare.cpu_us:.1f} us for FastAPI's check)"
        print(
            f"By server CPU time per request (what a saturated worker can give): "
            f"{bare.cpu_us / thotbot.cpu_us:.1%}; Thotbot spends "
            f"{thotbot.cpu_us - bare.cpu_us:.1f} us more per request than bare{against}."
        )
    if thotbot.cpu_all_us:
        print(
            f"Thotbot's CPU time from the first use of each key to its exit, background work "
            f"included: {thotbot.cpu_all_us:.1f} us per request it served."
        )


def as_json(summaries: list[Summary]) -> list[dict[str, object]]:
    return [asdict(s) for s in summaries]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags auth_throughput.py and keys_sweep.py share."""
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    parser.add_argument("--runs", type=int, default=3, help="runs per server; the median counts (default 3)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (default 32)")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the servers to CPU 0 and the load to CPU 1"
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")


def options_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Options:
    if args.duration <= 0 or args.runs < 1 or args.connections < 1:
        parser.error("--duration, --runs and --connections must be positive")
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    elif client == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk), or use --client python")
    for module in ("httptools", "uvloop"):
        __import__(module)  # uvicorn's "auto" picks them only when they are installed
    return Options(args.duration, args.runs, args.connections, client, pin=not args.no_pin and can_pin())


def describe_load(options: Options) -> str:
    load_name = "wrk -t1 --latency" if options.client == "wrk" else "an asyncio client in a second process"
    return (
        f"load: {load_name}, {options.connections} connections, {options.runs} runs x {options.duration:g} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Requests/s and latency on /v1/version: bare, FastAPI, Thotbot."
    )
    add_arguments(parser)
    parser.add_argument("--keys-in-store", type=int, default=1, help="keys the account has (default 1)")
    parser.add_argument(
        "--keys-in-use", type=int, default=1, help="keys the requests take in turn (default 1)"
    )
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    if args.load:
        run_load_from_stdin()
        return
    if not 1 <= args.keys_in_use <= args.keys_in_store:
        parser.error("--keys-in-use must be between 1 and --keys-in-store")
    options = options_from(parser, args)
    print_machine(machine(options.pin))
    print(describe_load(options))
    with tempfile.TemporaryDirectory(prefix="thotbot-bench-") as tmp:
        workdir = Path(tmp)
        with key_store(args.database, args.keys_in_store, args.keys_in_use, workdir) as store:
            print(
                f"database: {store.backend}; keys in store: {store.keys_in_store:,} "
                f"(made in {store.seconds_to_create:.1f} s); keys in use: {args.keys_in_use:,}"
            )
            summaries = run_point(store, args.keys_in_use, options, workdir)
    print()
    report(summaries)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
