"""A pytest plugin that prints line and branch coverage apart, after pytest-cov's table.

Coverage's own total mixes lines and branches into one figure (the one ``fail_under`` holds). `make cov`
and CI's `make test` load this with ``-p tests.coverage_totals`` beside ``--cov-report=json:PATH``, and
it reads that JSON report, which pytest-cov writes before the terminal summary.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    reports = getattr(config.option, "cov_report", None) or {}
    path = reports.get("json")
    if path is None or not Path(path).exists():
        return
    totals = json.loads(Path(path).read_text(encoding="utf-8"))["totals"]
    terminalreporter.write_line(
        f"coverage: lines {totals['percent_statements_covered']:.1f}%"
        f" ({totals['covered_lines']}/{totals['num_statements']}),"
        f" branches {totals['percent_branches_covered']:.1f}%"
        f" ({totals['covered_branches']}/{totals['num_branches']}),"
        f" together {totals['percent_covered']:.1f}%"
    )
