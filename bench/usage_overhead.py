"""What usage recording costs: authenticated requests/s with recording on beside recording off, and
the memory of a server sent 100,000 distinct User-Agents.

    python bench/usage_overhead.py [--duration 5] [--runs 7] [--connections 32] [--distinct 100000]
                                   [--keys 16] [--rounds 1] [--skip-throughput] [--skip-memory]

Two `thotbot serve` processes share one temporary SQLite database: one as shipped, one with the
hidden THOTBOT_USAGE_RECORDING=off (for this benchmark only). Everything else is on in both: key
cache, rate limiter (with a limit no run reaches), access log to a file. Throughput is measured on
both at once, GET /v1/version with a descriptive User-Agent for --runs runs of --duration seconds:
a busy neighbour slows both alike, and as the scheduler shares the CPUs between the two servers,
each serves in proportion to what a request costs it. Each run gives the ratio of requests/s and of
the servers' CPU time per request (from /proc); the medians are the result. The load comes from
`wrk` when installed, else from an asyncio client in a second process. The memory part then sends
--rounds x --distinct requests, each with a new 500-character User-Agent, spread over --keys keys,
to each server and samples its resident memory (VmRSS). Loopback only, bounded in time; Linux.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import cpu_seconds, free_port, run_wrk, thotbot_cli

PATH = "/v1/version"
USER_AGENT = "thotbot-bench/1.0 (bench/usage_overhead.py; loopback benchmark)"
TARGET = 0.95


# The load generator: keep-alive connections, one request in flight on each.


async def _connection(
    host: str, port: int, requests: Iterator[bytes], deadline: float, counts: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for request in requests:
            if time.perf_counter() >= deadline:
                break
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await reader.readexactly(int(match.group(1)) if match else 0)
            counts[0] += 1
            if head[9:10] != b"2":
                counts[1] += 1
    except (OSError, asyncio.IncompleteReadError):
        counts[2] += 1
    finally:
        writer.close()


def _requests(config: dict[str, object]) -> Iterator[bytes]:
    keys = list(config["keys"])  # type: ignore[call-overload]
    heads = [f"GET {PATH} HTTP/1.1\r\nHost: {config['host']}\r\nAuthorization: Bearer {k}\r\n" for k in keys]
    distinct = int(str(config.get("distinct", 0)))
    if not distinct:
        fixed = f"{heads[0]}User-Agent: {USER_AGENT}\r\n\r\n".encode("latin-1")
        while True:
            yield fixed
    offset = int(str(config.get("offset", 0)))
    for i in range(offset, offset + distinct):
        # Each one new, and as long as the guard keeps (512 bytes): the worst case for memory.
        agent = f"bench-client-{i:07d}/1.0 (bench@example.com; {'x' * 440})"
        yield f"{heads[i % len(heads)]}User-Agent: {agent}\r\n\r\n".encode("latin-1")


async def _load(config: dict[str, object]) -> dict[str, float]:
    host, port = str(config["host"]), int(str(config["port"]))
    counts = [0, 0, 0]  # requests, non-2xx, errors
    requests = _requests(config)  # shared: the connections take turns drawing from it
    started = time.perf_counter()
    deadline = started + float(str(config["duration"]))
    connections = int(str(config["connections"]))
    await asyncio.gather(*(_connection(host, port, requests, deadline, counts) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return {
        "requests": counts[0],
        "requests_per_s": counts[0] / elapsed,
        "non_2xx": counts[1],
        "errors": counts[2],
    }


def run_load_from_stdin() -> None:
    """The second process: reads its settings (the key among them) on stdin, prints JSON."""
    config = json.loads(sys.stdin.read())
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(json.dumps(asyncio.run(_load(config))))


def load(
    url: str, keys: list[str], duration: float, connections: int, distinct: int = 0, offset: int = 0
) -> dict[str, float]:
    host, port = url.removeprefix("http://").split(":")
    config = {
        "host": host,
        "port": int(port),
        "keys": keys,
        "duration": duration,
        "connections": connections,
        "distinct": distinct,
        "offset": offset,
    }
    done = subprocess.run(
        [sys.executable, __file__, "--load"],
        input=json.dumps(config).encode(),
        capture_output=True,
        check=True,
        timeout=duration + 60,
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def wrk(url: str, key: str, duration: float, connections: int, script: Path) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}", "User-Agent": USER_AGENT}
    return run_wrk(url + PATH, headers, duration, connections, script)


# The servers.


class Server:
    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"{name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "thotbot", "serve", "--port", str(self.port)],
                env=env,
                cwd=workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"bench: the {self.name} server exited:\n{self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.1)
        raise SystemExit(f"bench: the {self.name} server did not start within {timeout:g} s")

    def cpu_seconds(self) -> float:
        """User and system CPU time of the server process so far."""
        seconds = cpu_seconds(self.process.pid)
        assert seconds is not None, "no /proc/PID/stat: this part needs Linux"
        return seconds

    def rss(self) -> int:
        """Resident memory now, in kB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        assert match, "no VmRSS in /proc: this part needs Linux"
        return int(match.group(1))

    @contextlib.contextmanager
    def sampling(self, every: float = 0.05) -> Iterator[list[int]]:
        samples = [self.rss()]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(every):
                samples.append(self.rss())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield samples
        finally:
            stop.set()
            thread.join()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def servers(env: dict[str, str], workdir: Path) -> Iterator[dict[str, Server]]:
    started = {
        "recording on": Server("on", env, workdir),
        "recording off": Server("off", {**env, "THOTBOT_USAGE_RECORDING": "off"}, workdir),
    }
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


# The two measurements.


def throughput(
    running: dict[str, Server], key: str, duration: float, runs: int, connections: int, workdir: Path
) -> None:
    use_wrk = shutil.which("wrk") is not None
    client = "wrk -t1" if use_wrk else "an asyncio client in a second process"
    print(f"load: {client} on both servers at once, {connections} connections each")
    print(f"{runs} runs of {duration:g} s; the server on each uses its share of the same CPUs")

    def measure(server: Server, seconds: float) -> tuple[float, float]:
        """Requests/s, and the server's CPU time per request in microseconds."""
        cpu = server.cpu_seconds()
        if use_wrk:
            result = wrk(server.url, key, seconds, connections, workdir / f"wrk-{server.name}.lua")
        else:
            result = load(server.url, [key], seconds, connections)
        cpu = server.cpu_seconds() - cpu
        if result["non_2xx"] or result["errors"]:
            raise SystemExit(f"bench: {server.name}: {result['non_2xx']} non-2xx, {result['errors']} errors")
        rate = result["requests_per_s"]
        return rate, cpu / (rate * seconds) * 1e6

    on, off = running["recording on"], running["recording off"]

    def measure_both(seconds: float) -> tuple[tuple[float, float], tuple[float, float]]:
        # Side by side: a busy neighbour slows both alike, and as the scheduler shares the CPUs
        # between the two servers, each serves in proportion to what a request costs it.
        with ThreadPoolExecutor(2) as pool:
            on_run, off_run = pool.submit(measure, on, seconds), pool.submit(measure, off, seconds)
            return on_run.result(), off_run.result()

    measure_both(1.0)  # warm-up: the key's first lookup, caches, the allocator
    columns = ("on req/s", "off req/s", "on/off", "on CPU/req", "off CPU/req", "off/on")
    header = f"{'run':<6}" + "".join(f"{c:>{max(len(c) + 2, 8)}}" for c in columns)
    print(header)
    print("-" * len(header))
    rate_ratios, cpu_ratios = [], []
    for i in range(runs):
        (on_rate, on_cpu), (off_rate, off_cpu) = measure_both(duration)
        rate_ratios.append(on_rate / off_rate)
        cpu_ratios.append(off_cpu / on_cpu)
        print(
            f"{i + 1:<6}{on_rate:>10.0f}{off_rate:>10.0f}{on_rate / off_rate:>8.1%}"
            f"{on_cpu:>10.0f}us{off_cpu:>11.0f}us{off_cpu / on_cpu:>8.1%}"
        )
    rate_ratio, cpu_ratio = statistics.median(rate_ratios), statistics.median(cpu_ratios)
    print(
        f"\nmedian of {runs} runs: requests/s on/off = {rate_ratio:.1%}; "
        f"server CPU per request off/on = {cpu_ratio:.1%}"
    )
    for what, ratio in (("requests/s", rate_ratio), ("CPU per request", cpu_ratio)):
        verdict = "within" if ratio >= TARGET else "NOT within"
        print(f"  by {what}, recording on is {verdict} 5% of recording off")


def memory(
    running: dict[str, Server], keys: list[str], distinct: int, rounds: int, connections: int, workdir: Path
) -> None:
    print(
        f"\n{rounds} x {distinct:,} requests, each with a User-Agent of its own (500 characters), over "
        f"{len(keys)} keys, to each server; RSS sampled every 50 ms:"
    )
    header = f"{'server':<16}{'round':>6}{'RSS before':>12}{'peak RSS':>12}{'RSS after':>12}{'req/s':>8}"
    print(header)
    print("-" * len(header))
    for name, server in running.items():
        for round_ in range(rounds):
            rss_before = server.rss()
            with server.sampling() as samples:
                result = load(server.url, keys, 600.0, connections, distinct, offset=round_ * distinct)
                time.sleep(3)  # a flush later
            if result["non_2xx"] or result["errors"] or result["requests"] != distinct:
                raise SystemExit(f"bench: {name}: {result}")
            rss_after, peak = server.rss(), max(samples)
            print(
                f"{name:<16}{round_ + 1:>6}{rss_before / 1024:>10.1f}MB{peak / 1024:>10.1f}MB"
                f"{rss_after / 1024:>10.1f}MB{result['requests_per_s']:>8.0f}"
            )
    running["recording on"].stop()  # SIGTERM: the last flush
    with contextlib.closing(sqlite3.connect(workdir / "thotbot.db")) as db:
        total, unitemised = db.execute("SELECT SUM(requests), SUM(unitemised) FROM usage_days").fetchone()
        agents = db.execute("SELECT COUNT(*) FROM usage_agents").fetchone()[0]
    print(
        f"\nrecorded by the server with recording on (all runs): {total:,} requests, "
        f"{agents:,} distinct User-Agents itemised, {unitemised:,} requests counted without theirs"
    )


def in_process(workdir: Path, key: str, rounds: int, per_round: int) -> None:
    """Time per request through the app itself (no sockets, no uvicorn), recording on and off
    interleaved in one process, and the time of one flush: the recorder's cost without the noise
    of a shared machine's scheduler."""
    from thotbot.app import create_app
    from thotbot.config import load_settings
    from thotbot.services import build_services

    url = f"sqlite:///{workdir / 'thotbot.db'}"
    apps = {}
    for name, recording in (("recording on", "on"), ("recording off", "off")):
        settings = load_settings(database_url=url, rate_limit="1000000000/minute", usage_recording=recording)
        services = build_services(settings)
        apps[name] = (create_app(settings, services), services)
    headers = [
        (b"host", b"localhost"),
        (b"authorization", f"Bearer {key}".encode()),
        (b"user-agent", USER_AGENT.encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message

    async def run(name: str) -> tuple[float, float]:
        """Microseconds per request, then milliseconds for the flush of what they recorded."""
        app, services = apps[name]
        started = time.perf_counter()
        for _ in range(per_round):
            await app(dict(scope), receive, send)  # type: ignore[arg-type]
        served = time.perf_counter()
        await services.usage_recorder.flush()
        return (served - started) / per_round * 1e6, (time.perf_counter() - served) * 1e3

    async def measure() -> dict[str, list[tuple[float, float]]]:
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in apps}
        for name in apps:
            await run(name)  # warm-up: the key's first (database) lookup, the salts
        for i in range(rounds):
            for name in list(apps) if i % 2 == 0 else list(reversed(apps)):
                times[name].append(await run(name))
        return times

    times = asyncio.run(measure())
    # The fastest round is the one a busy neighbour disturbed least: noise only ever adds time.
    on, off = (min(t for t, _ in times[n]) for n in ("recording on", "recording off"))
    flush = min(f for _, f in times["recording on"])
    print(f"\nin process, {rounds} rounds of {per_round:,} requests each, recording on and off interleaved:")
    print(f"  fastest round: {on:.1f} us a request on, {off:.1f} us off: recording adds {on - off:.1f} us")
    print(
        f"  a flush (one key, one User-Agent) takes {flush:.1f} ms, every 2 s: {flush / 20:.2f}% of one CPU"
    )
    for _, services in apps.values():
        services.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description="Requests/s and memory with usage recording on and off.")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    parser.add_argument("--runs", type=int, default=7, help="runs; the median counts (default 7)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (default 32)")
    parser.add_argument("--distinct", type=int, default=100_000, help="distinct User-Agents (default 100000)")
    parser.add_argument(
        "--keys", type=int, default=16, help="keys the distinct User-Agents are spread over (default 16)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="rounds of --distinct new ones (default 1)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        run_load_from_stdin()
        return
    if min(args.duration, args.runs, args.connections, args.distinct, args.keys, args.rounds) <= 0:
        parser.error("--duration, --runs, --connections, --distinct, --keys and --rounds must be positive")
    with tempfile.TemporaryDirectory(prefix="thotbot-bench-") as tmp:
        workdir = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("THOTBOT_")}
        env.update(
            THOTBOT_DATABASE_URL=f"sqlite:///{workdir / 'thotbot.db'}",
            THOTBOT_RATE_LIMIT="1000000000/minute",
            THOTBOT_ANON_RATE_LIMIT="1000000000/minute",
        )
        email = "bench@example.com"
        thotbot_cli(["users", "create", email, "--password-stdin"], env, workdir, secrets.token_urlsafe(24))
        keys = [
            thotbot_cli(["keys", "create", "--user", email, "--name", f"bench {i}"], env, workdir)
            for i in range(args.keys)
        ]
        print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
        with servers(env, workdir) as running:
            if not args.skip_throughput:
                throughput(running, keys[0], args.duration, args.runs, args.connections, workdir)
            if not args.skip_memory:
                memory(running, keys, args.distinct, args.rounds, args.connections, workdir)
        if not args.skip_in_process:
            in_process(workdir, keys[0], rounds=60, per_round=1_000)


if __name__ == "__main__":
    main()
