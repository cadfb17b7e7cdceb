"""How throughput and tail latency move with the number of keys: in the store, and in use.

    python bench/keys_sweep.py [--quick] [--database sqlite|postgresql] [--duration 5] [--runs 3]
                               [--connections 32] [--client auto|wrk|python] [--no-pin]
                               [--output bench/results/keys_sweep.json] [--svg docs/keys_sweep.svg]
    python bench/keys_sweep.py --redraw      # the chart again from the JSON, nothing measured

Runs bench/auth_throughput.py's measurement (bare Starlette, FastAPI with HTTPBearer, Thotbot; the
runs alternate between them) at each point of a small grid:

- keys in store 10, 200,000 and 1,000,000, with 1 key in use;
- 200,000 keys in store, with 1, 1,000 and 50,000 keys in use (taken in turn, request by request).

``--quick`` is a smoke version: 10, 2,000 and 20,000 keys in store, 1, 100 and 1,000 in use at
2,000, one run of 2 s per server (unless --runs or --duration say otherwise). Each store size gets a
fresh temporary database filled by bench/bulk_keys.py; each point fresh servers. Writes every run
and summary, with the machine, to the JSON file and draws two panels in an SVG file written by hand
(no plotting library): requests/s (solid) and p99 latency (dashed) against keys in store and
against keys in use.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import tempfile
from html import escape
from pathlib import Path

from auth_throughput import (
    BARE,
    FASTAPI,
    THOTBOT,
    add_arguments,
    as_json,
    describe_load,
    key_store,
    machine,
    options_from,
    print_machine,
    report,
    run_point,
)

ROOT = Path(__file__).resolve().parent.parent
#: Keys in store (with 1 in use); the store size at which keys in use vary, and those counts.
GRIDS: dict[str, dict[str, object]] = {
    "full": {"stores": [10, 200_000, 1_000_000], "uses_at": 200_000, "uses": [1, 1_000, 50_000]},
    "quick": {"stores": [10, 2_000, 20_000], "uses_at": 2_000, "uses": [1, 100, 1_000]},
}
COLOURS = {BARE: "#7f7f7f", FASTAPI: "#1f77b4", THOTBOT: "#d62728"}


def plan(grid: dict[str, object]) -> list[tuple[int, list[int]]]:
    """(keys in store, the keys-in-use counts measured with it), smallest store first."""
    uses_at, uses = grid["uses_at"], list(grid["uses"])  # type: ignore[call-overload]
    return [(store, uses if store == uses_at else [1]) for store in grid["stores"]]  # type: ignore[attr-defined]


def sweep(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, object]:
    grid_name = "quick" if args.quick else "full"
    if args.quick:
        args.runs = args.runs or 1
        args.duration = args.duration or 2.0
    else:
        args.runs = args.runs or 3
        args.duration = args.duration or 5.0
    options = options_from(parser, args)
    info = machine(options.pin)
    print_machine(info)
    print(describe_load(options))
    points: list[dict[str, object]] = []
    for keys_in_store, uses in plan(GRIDS[grid_name]):
        with (
            tempfile.TemporaryDirectory(prefix="thotbot-sweep-") as tmp,
            key_store(args.database, keys_in_store, max(uses), Path(tmp)) as store,
        ):
            made = f"made in {store.seconds_to_create:.1f} s"
            print(f"\n{keys_in_store:,} keys in store ({args.database}), {made}")
            for keys_in_use in uses:
                print(f"\n== {keys_in_store:,} keys in store, {keys_in_use:,} in use")
                summaries = run_point(store, keys_in_use, options, Path(tmp))
                report(summaries)
                points.append(
                    {
                        "keys_in_store": keys_in_store,
                        "keys_in_use": keys_in_use,
                        "seconds_to_create_store": round(store.seconds_to_create, 2),
                        "servers": as_json(summaries),
                    }
                )
    info["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return {
        "commit": _commit(),
        "grid": grid_name,
        "database": args.database,
        "machine": info,
        "load": {
            "client": options.client,
            "connections": options.connections,
            "runs": options.runs,
            "duration_s": options.duration,
        },
        "points": points,
    }


def _commit() -> str:
    """The commit measured (``+`` when the tree has changes), or "unknown" outside git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD"], check=False).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+" if dirty else "")


# The chart: two panels, each with requests/s on the left axis and p99 on the right.

WIDTH, HEIGHT = 960, 400
PANEL_W, PANEL_H = 330, 230
TOP = 84


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)


def _count(n: float) -> str:
    n = int(n)
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return f"{n:,}"


def _panel(
    left: float, title: str, x_label: str, series: dict[str, list[tuple[int, float, float]]]
) -> list[str]:
    """One panel: x on a log scale; per server (x, requests/s, p99 ms)."""
    xs = sorted({x for rows in series.values() for x, _, _ in rows})
    rps_max = _nice_ceiling(max(r for rows in series.values() for _, r, _ in rows))
    p99_max = _nice_ceiling(max(p for rows in series.values() for _, _, p in rows))
    lo, hi = math.log10(xs[0]), math.log10(xs[-1])
    bottom, right = TOP + PANEL_H, left + PANEL_W

    def px(x: float) -> float:
        return left + (PANEL_W / 2 if hi == lo else (math.log10(x) - lo) / (hi - lo) * PANEL_W)

    def py(value: float, top_value: float) -> float:
        return bottom - value / top_value * PANEL_H

    out = [
        f'<text x="{left + PANEL_W / 2}" y="{TOP - 14}" text-anchor="middle" class="title">'
        f"{escape(title)}</text>",
        f'<rect x="{left}" y="{TOP}" width="{PANEL_W}" height="{PANEL_H}" class="frame"/>',
    ]
    for i in range(5):  # horizontal grid, both axes' ticks
        fraction = i / 4
        y = bottom - fraction * PANEL_H
        out.append(f'<line x1="{left}" y1="{y}" x2="{right}" y2="{y}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{rps_max * fraction:,.0f}</text>')
        out.append(f'<text x="{right + 6}" y="{y + 4}">{p99_max * fraction:.3g}</text>')
    for x in xs:
        out.append(f'<line x1="{px(x)}" y1="{bottom}" x2="{px(x)}" y2="{bottom + 5}" class="axis"/>')
        out.append(f'<text x="{px(x)}" y="{bottom + 18}" text-anchor="middle">{_count(x)}</text>')
    out += [
        f'<text x="{left + PANEL_W / 2}" y="{bottom + 38}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text transform="translate({left - 52},{TOP + PANEL_H / 2}) rotate(-90)" text-anchor="middle">'
        "requests/s (solid)</text>",
        f'<text transform="translate({right + 44},{TOP + PANEL_H / 2}) rotate(90)" text-anchor="middle">'
        "p99 latency, ms (dashed)</text>",
    ]
    for name, rows in series.items():
        colour = COLOURS.get(name, "#000")
        rps_points = " ".join(f"{px(x):.1f},{py(r, rps_max):.1f}" for x, r, _ in rows)
        p99_points = " ".join(f"{px(x):.1f},{py(p, p99_max):.1f}" for x, _, p in rows)
        out.append(f'<polyline points="{rps_points}" stroke="{colour}" class="rps"/>')
        out.append(f'<polyline points="{p99_points}" stroke="{colour}" class="p99"/>')
        for x, r, p in rows:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(r, rps_max):.1f}" r="3" fill="{colour}"/>')
            out.append(
                f'<rect x="{px(x) - 2.5:.1f}" y="{py(p, p99_max) - 2.5:.1f}" width="5" height="5" '
                f'fill="{colour}"/>'
            )
    return out


def draw(data: dict[str, object]) -> str:
    grid = GRIDS[str(data["grid"])]
    points: list[dict[str, object]] = list(data["points"])  # type: ignore[call-overload]

    def series(keep: object, axis: str) -> dict[str, list[tuple[int, float, float]]]:
        rows: dict[str, list[tuple[int, float, float]]] = {}
        for point in points:
            if not keep(point):  # type: ignore[operator]
                continue
            for server in point["servers"]:  # type: ignore[attr-defined]
                rows.setdefault(server["name"], []).append(
                    (int(point[axis]), float(server["requests_per_s"]), float(server["p99_ms"]))
                )
        return {name: sorted(values) for name, values in rows.items()}

    by_store = series(lambda p: p["keys_in_use"] == 1, "keys_in_store")
    by_use = series(lambda p: p["keys_in_store"] == grid["uses_at"], "keys_in_use")
    info: dict[str, object] = dict(data["machine"])  # type: ignore[call-overload]
    load: dict[str, object] = dict(data["load"])  # type: ignore[call-overload]
    subtitle = (
        (f"commit {data['commit']}, " if "commit" in data else "")
        + f"{data['grid']} grid, {data['database']}; {info['cpus']} CPUs ({info['cpu']}), "
        f"Python {info['python']}; {load['client']}, {load['connections']} connections, "
        f"median of {load['runs']} x {load['duration_s']} s; pinned: {info['pinned']}"
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        "<style>.title{font-size:13px;font-weight:bold}.frame{fill:none;stroke:#333}"
        ".grid{stroke:#ddd}.axis{stroke:#333}.rps{fill:none;stroke-width:2}"
        ".p99{fill:none;stroke-width:1.5;stroke-dasharray:5 3}</style>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
        f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" class="title">'
        "GET /v1/version: requests/s and p99 latency as the keys grow</text>",
        f'<text x="{WIDTH / 2}" y="34" text-anchor="middle" fill="#555">{escape(subtitle)}</text>',
        *_panel(90, "keys in store (1 in use)", "keys in store (log scale)", by_store),
        *_panel(
            560,
            f"keys in use ({_count(int(str(grid['uses_at'])))} in store)",
            "keys in use (log scale)",
            by_use,
        ),
    ]
    legend_y = HEIGHT - 34
    for i, name in enumerate((BARE, FASTAPI, THOTBOT)):
        x = 220 + i * 190
        parts.append(
            f'<line x1="{x}" y1="{legend_y}" x2="{x + 24}" y2="{legend_y}" stroke="{COLOURS[name]}" '
            'stroke-width="3"/>'
        )
        parts.append(f'<text x="{x + 30}" y="{legend_y + 4}">{escape(name)}</text>')
    parts.append(
        f'<text x="{WIDTH / 2}" y="{legend_y + 18}" text-anchor="middle" fill="#555">'
        "solid line, dots: requests/s (left axis); dashed line, squares: p99 latency (right axis)</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="Throughput and p99 against keys in store and in use.")
    add_arguments(parser)
    # No default here: --quick picks its own (1 run of 2 s), the full grid auth_throughput's (3 x 5 s).
    parser.set_defaults(duration=None, runs=None)
    parser.add_argument("--quick", action="store_true", help="a small smoke grid, 1 run of 2 s")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "keys_sweep.json")
    parser.add_argument("--svg", type=Path, default=ROOT / "docs" / "keys_sweep.svg")
    parser.add_argument("--redraw", action="store_true", help="only draw the SVG again from --output")
    args = parser.parse_args()
    if args.redraw:
        data = json.loads(args.output.read_text(encoding="utf-8"))
    else:
        data = sweep(args, parser)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.output}")
    args.svg.write_text(draw(data), encoding="utf-8")
    print(f"drew {args.svg}")


if __name__ == "__main__":
    main()
