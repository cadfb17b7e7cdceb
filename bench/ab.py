"""Two builds of Thotbot side by side, under the same load at the same time: what a change costs.

    git worktree add /tmp/before HEAD~1            # or any revision; the build under test is here
    python bench/ab.py /tmp/before . [--duration 5] [--runs 6] [--connections 16]
                       [--database sqlite|postgresql] [--keys-in-store 1] [--keys-in-use 1]

    python bench/ab.py . . --keys-in-store 200000 --keys-in-use 1 --b-keys-in-use 50000

Each argument is a source tree (a checkout holding ``src/thotbot``). Both builds run as `thotbot
serve` (one worker, the same settings as `make bench`) on one temporary database, both pinned to
CPU 0, and each gets its own `wrk` on CPU 1 with ``--connections`` connections, both loads at once.
The two servers then share one core run by run: each serves in proportion to what a request costs
it, and whatever slows the machine slows both alike. That is what makes a change of a few percent
visible on a machine whose runs differ by ±20% from one to the next (docs/PERFORMANCE.md), where
`make bench` compares servers measured one after the other.

Per run it prints each build's requests/s and its CPU time per request (from /proc, this run
only), and B's figures against A's, and what share of each build's CPU went to threads beside the
event loop's (the flushes, the rate-limit sync, the key lookups); then the medians. Requests carry
the first ``--keys-in-use`` keys in turn with a descriptive User-Agent, as in `make bench`; every
key in use is sent once to each build before measuring. Without `wrk`, it stops: the Python client
would take CPU 1 itself.

With ``--b-env NAME=VALUE`` (repeatable), B's server gets that environment variable: one build
against itself, a setting against its default.

With ``--b-keys-in-use``, B's load carries that many keys instead: one build against itself, one key
in use beside 50,000, measures how flat in keys the cost of a request is, under the same load at the
same time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
from pathlib import Path

from _common import cpu_seconds, free_port, keys_script, main_thread_cpu_seconds, pinned, run_wrk_script
from auth_throughput import (
    LOAD_CPU,
    PATH,
    SERVER_CPU,
    USER_AGENT,
    Load,
    key_store,
    started,
    thotbot_env,
    touch_every_key,
)
from bulk_keys import write_secrets


def _tree(path: str) -> Path:
    tree = Path(path).resolve()
    if not (tree / "src" / "thotbot" / "__init__.py").is_file():
        raise SystemExit(f"bench: {path} is not a source tree of Thotbot (no src/thotbot in it)")
    return tree


def _run(
    servers: list[tuple[str, int, str]], loads: list[Load], duration: float, connections: int
) -> list[tuple[float, float, float]]:
    """One run of both loads at once, per server: (requests/s, CPU µs a request, the share of that
    CPU spent outside the event loop's thread)."""
    before = [cpu_seconds(pid) for _, pid, _ in servers]
    before_main = [main_thread_cpu_seconds(pid) for _, pid, _ in servers]
    results: list[dict[str, float]] = [{} for _ in servers]

    def one(i: int, url: str) -> None:
        results[i] = run_wrk_script(url + PATH, loads[i].script, duration, connections, loads[i].cpu)

    threads = [threading.Thread(target=one, args=(i, url)) for i, (_, _, url) in enumerate(servers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = [cpu_seconds(pid) for _, pid, _ in servers]
    after_main = [main_thread_cpu_seconds(pid) for _, pid, _ in servers]
    figures = []
    for (name, _, _), data, b, a, b_main, a_main in zip(
        servers, results, before, after, before_main, after_main, strict=True
    ):
        if data.get("non_2xx") or data.get("errors"):
            raise SystemExit(
                f"bench: {name} answered {data['non_2xx']:.0f} non-2xx, {data['errors']:.0f} errors"
            )
        rate = data["requests_per_s"]
        cpu = (a - b) / (rate * duration) * 1e6 if a is not None and b is not None and rate else float("nan")
        aside = float("nan")
        if a is not None and b is not None and a_main is not None and b_main is not None and a != b:
            aside = 1 - (a_main - b_main) / (a - b)
        figures.append((rate, cpu, aside))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", help="source tree of build A (the reference)")
    parser.add_argument("b", help="source tree of build B (the change)")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--connections", type=int, default=16, help="per build (default 16)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--keys-in-store", type=int, default=1)
    parser.add_argument("--keys-in-use", type=int, default=1)
    parser.add_argument("--b-keys-in-use", type=int, help="keys B's load carries (default: --keys-in-use)")
    parser.add_argument(
        "--b-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for B's server only (repeatable): a setting against the default",
    )
    args = parser.parse_args()
    trees = {"A": _tree(args.a), "B": _tree(args.b)}
    if not shutil.which("wrk"):
        raise SystemExit("bench: ab.py needs wrk (apt-get install wrk)")
    pin = bool(shutil.which("taskset")) and (os.cpu_count() or 1) >= 2
    server_cpu, load_cpu = (SERVER_CPU, LOAD_CPU) if pin else (None, None)
    print(f"A: {trees['A']}\nB: {trees['B']}")
    in_use = {"A": args.keys_in_use, "B": args.b_keys_in_use or args.keys_in_use}
    if max(in_use.values()) > args.keys_in_store:
        raise SystemExit("bench: more keys in use than in the store")
    print(
        f"database: {args.database}; keys in store: {args.keys_in_store:,}; "
        f"in use: {in_use['A']:,} by A, {in_use['B']:,} by B"
    )
    print(
        f"both servers on CPU {server_cpu}, one wrk each on CPU {load_cpu}, "
        f"{args.connections} connections each"
    )
    with tempfile.TemporaryDirectory(prefix="thotbot-ab-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        most = max(in_use.values())
        store = stack.enter_context(key_store(args.database, args.keys_in_store, most, workdir))
        loads = []
        for name, count in in_use.items():
            secrets_file, script = workdir / f"keys-{name}.txt", workdir / f"keys-{name}.lua"
            write_secrets(secrets_file, store.keys[:count])
            keys_script(script, secrets_file, PATH, USER_AGENT)
            loads.append(Load("wrk", load_cpu, store.keys[:count], script))
        servers = []
        for (name, tree), load in zip(trees.items(), loads, strict=True):
            env = thotbot_env(store.url) | {"PYTHONPATH": str(tree / "src")}
            if name == "B":
                env |= dict(item.split("=", 1) for item in args.b_env)
            port = free_port()
            command = [
                *pinned(server_cpu),
                sys.executable,
                "-m",
                "thotbot",
                "serve",
                "--port",
                str(port),
                "--workers",
                "1",
            ]
            logdir = workdir / name
            logdir.mkdir()
            server = stack.enter_context(started(f"{name} thotbot", command, env, logdir, port))
            print(touch_every_key(server, load, args.connections), flush=True)
            servers.append((name, server.pid, server.url))
        _run(servers, loads, 1.0, args.connections)  # warm-up
        rows = []
        print(
            f"\n{'run':>4} {'A req/s':>9} {'B req/s':>9} {'A CPU/req':>10} {'B CPU/req':>10} "
            f"{'B/A req/s':>10} {'B/A CPU':>8} {'A aside':>8} {'B aside':>8}"
        )
        for i in range(args.runs):
            (ra, ca, sa), (rb, cb, sb) = _run(servers, loads, args.duration, args.connections)
            rows.append((ra, rb, ca, cb, rb / ra, cb / ca, sa, sb))
            print(
                f"{i + 1:>4} {ra:>9.0f} {rb:>9.0f} {ca:>8.1f}us {cb:>8.1f}us {rb / ra:>9.1%} {cb / ca:>7.1%}"
                f" {sa:>7.1%} {sb:>7.1%}",
                flush=True,
            )
        med = [statistics.median(column) for column in zip(*rows, strict=True)]
        print(
            f"{'med':>4} {med[0]:>9.0f} {med[1]:>9.0f} {med[2]:>8.1f}us {med[3]:>8.1f}us "
            f"{med[4]:>9.1%} {med[5]:>7.1%} {med[6]:>7.1%} {med[7]:>7.1%}"
        )
        print(
            f"\nB costs {med[5]:.1%} of A's CPU time a request ({med[3] - med[2]:+.1f} us), "
            f"serving {med[4]:.1%} of A's requests/s."
        )


if __name__ == "__main__":
    main()
