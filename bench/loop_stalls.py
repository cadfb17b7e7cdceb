"""What stalls the event loop under load: its lag over time beside the work that ran then.

    python bench/loop_stalls.py [--database sqlite|postgresql] [--keys-in-store 200000]
                                [--keys-in-use 50000] [--runs 6] [--duration 5] [--connections 32]

`thotbot serve` (one worker, pinned to CPU 0 as in `make bench`) runs with probes added in its own
process: a task that sleeps 1 ms on the event loop over and over and records by how much each
sleep overran (the loop's lag: what a request arriving then waited for), and timings of the work
that can hold the interpreter: the usage and request-log flushes (wall and their thread's CPU
time), the rate-limit sync, the access log's drains, the key-change poll and every pass of the
garbage collector (`gc.callbacks`, CPU time of the thread it ran in). wrk then sends authenticated
requests over the first ``--keys-in-use`` keys, as `make bench` does, for ``--runs`` runs.

It prints the lag's percentiles, each kind of work's count and CPU time (median and longest), and
the longest stalls with the work that overlapped them. CPU times, unlike wall times, hold on a busy
machine. The probes cost a little throughput; take the requests/s from `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

OUT = "THOTBOT_LOOP_STALLS_OUT"
STALL = 0.020


def serve_with_probes(argv: list[str]) -> int:
    """`thotbot serve` with the probes; writes what they saw to $THOTBOT_LOOP_STALLS_OUT on SIGUSR1."""
    import thotbot.app as app
    from thotbot.__main__ import main
    from thotbot.accesslog import AccessLog
    from thotbot.ratelimit import RateLimiter
    from thotbot.storage.keys import SQLKeyStore
    from thotbot.usage.recorder import UsageRecorder
    from thotbot.usage.requests import RequestLogRecorder

    work: list[tuple[str, float, float, float | None]] = []  # (what, start, end, thread CPU)
    lags: list[tuple[float, float]] = []

    def timed(owner: Any, name: str, what: str) -> None:
        plain = getattr(owner, name)
        if asyncio.iscoroutinefunction(plain):

            async def awaited(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await plain(*args, **kwargs)
                finally:
                    work.append((what, start, time.perf_counter(), None))

            setattr(owner, name, functools.wraps(plain)(awaited))
            return

        def called(*args: Any, **kwargs: Any) -> Any:
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return plain(*args, **kwargs)
            finally:
                work.append((what, start, time.perf_counter(), time.thread_time() - cpu))

        setattr(owner, name, functools.wraps(plain)(called))

    timed(UsageRecorder, "_write", "usage flush")
    timed(RequestLogRecorder, "_write", "request-log flush")
    timed(RateLimiter, "sync", "rate-limit sync")
    timed(AccessLog, "drain", "access-log drain")
    timed(SQLKeyStore, "changes_since", "key-change poll")

    collecting: dict[str, float] = {}

    def collector(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting.update(start=time.perf_counter(), cpu=time.thread_time())
        else:
            spent = time.thread_time() - collecting["cpu"]
            work.append((f"gc gen {info['generation']}", collecting["start"], time.perf_counter(), spent))

    gc.callbacks.append(collector)

    async def probe() -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((start, time.perf_counter() - start - 0.001))

    flush: Callable[..., Any] = app._flush_periodically

    async def flush_and_probe(*args: Any) -> None:
        probe_task = asyncio.get_running_loop().create_task(probe())
        try:
            await flush(*args)
        finally:
            probe_task.cancel()

    app._flush_periodically = flush_and_probe  # type: ignore[assignment]

    def dump(*_: object) -> None:
        Path(os.environ[OUT]).write_text(json.dumps({"work": work, "lags": lags}))

    signal.signal(signal.SIGUSR1, dump)
    return main(argv)


def report(path: Path) -> None:
    seen = json.loads(path.read_text())
    work, lags = seen["work"], seen["lags"]
    if not lags:
        raise SystemExit("bench: the probe recorded nothing")
    origin = lags[0][0]
    ordered = sorted(lag for _, lag in lags)

    def at(q: float) -> float:
        return ordered[int(q * (len(ordered) - 1))] * 1000

    print(f"\nloop lag over {len(ordered):,} probes (ms):")
    print(f"  p50 {at(0.5):.2f}  p90 {at(0.9):.2f}  p99 {at(0.99):.2f}  p99.9 {at(0.999):.2f}", end="")
    print(f"  max {at(1):.1f}")
    print(f"\n{'work':<18} {'count':>6} {'CPU s':>7} {'CPU p50 ms':>11} {'CPU max ms':>11}", end="")
    print(f" {'wall max ms':>12}")
    kinds: dict[str, list[list[float]]] = {}
    for what, start, end, cpu in work:
        kinds.setdefault(what, []).append([end - start, cpu or 0.0])
    for what, runs in sorted(kinds.items()):
        cpus = sorted(cpu for _, cpu in runs)
        has_cpu = any(cpus)
        print(
            f"{what:<18} {len(runs):>6} {sum(cpus) if has_cpu else float('nan'):>7.2f} "
            f"{cpus[len(cpus) // 2] * 1000 if has_cpu else float('nan'):>11.1f} "
            f"{cpus[-1] * 1000 if has_cpu else float('nan'):>11.1f} {max(w for w, _ in runs) * 1000:>12.1f}"
        )
    stalls = sorted((lag, start) for start, lag in lags if lag >= STALL)
    print(f"\nstalls of {STALL * 1000:.0f} ms or more: {len(stalls)}; the longest, and what ran then:")
    for lag, start in reversed(stalls[-10:]):
        during = sorted(
            {what for what, s, e, _ in work if s <= start + lag and e >= start and what != "access-log drain"}
        )
        print(f"  at {start - origin:7.2f} s: {lag * 1000:6.1f} ms  {', '.join(during) or '(none probed)'}")


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        raise SystemExit(serve_with_probes(sys.argv[2:]))
    import auth_throughput as bench
    from _common import free_port, keys_script, pinned

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--keys-in-store", type=int, default=200_000)
    parser.add_argument("--keys-in-use", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--save", type=Path, help="also keep what the probes saw (JSON) in this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="thotbot-stalls-") as tmp:
        workdir = Path(tmp)
        with bench.key_store(args.database, args.keys_in_store, args.keys_in_use, workdir) as store:
            keys = store.keys[: args.keys_in_use]
            secrets_file, script = workdir / "keys.txt", workdir / "keys.lua"
            bench.write_secrets(secrets_file, keys)
            keys_script(script, secrets_file, bench.PATH, bench.USER_AGENT)
            load = bench.Load("wrk", bench.LOAD_CPU, keys, script)
            env = {**bench.thotbot_env(store.url), OUT: str(workdir / "probes.json")}
            port = free_port()
            serve = ["--serve", "serve", "--port", str(port)]
            command = [*pinned(bench.SERVER_CPU), sys.executable, __file__, *serve]
            with bench.started("Thotbot", command, env, workdir, port) as server:
                print(bench.touch_every_key(server, load, args.connections), flush=True)
                for n in range(args.runs):
                    result = bench.measure(server, load, args.duration, args.connections)
                    print(
                        f"run {n + 1}: {result.requests_per_s:,.0f} requests/s, p50 {result.p50_ms:.2f} ms,"
                        f" p99 {result.p99_ms:.2f} ms",
                        flush=True,
                    )
                os.kill(server.pid, signal.SIGUSR1)
                deadline = time.monotonic() + 30
                while not (workdir / "probes.json").exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
            report(workdir / "probes.json")
            if args.save:
                args.save.write_bytes((workdir / "probes.json").read_bytes())


if __name__ == "__main__":
    main()
