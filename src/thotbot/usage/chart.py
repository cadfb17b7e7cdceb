"""Requests per day as a small SVG bar chart, rendered on the server; pure, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from html import escape

__all__ = ["requests_chart"]

_TOP = 14
_BOTTOM = 16


def requests_chart(
    counts: Mapping[date, int],
    *,
    end: date,
    days: int = 30,
    width: int = 600,
    height: int = 140,
    label: str = "Requests per day",
) -> str:
    """An SVG bar chart of ``counts`` for the ``days`` days ending with ``end`` (UTC dates).

    Days missing from ``counts`` are zero. Bars use ``currentColor`` and the markup carries no
    inline style or script, so the page's CSS colours it and a strict CSP serves it as is.
    """
    assert days > 0, "days must be positive"
    start = end - timedelta(days=days - 1)
    series = [(day, max(0, counts.get(day, 0))) for day in (start + timedelta(days=i) for i in range(days))]
    total = sum(n for _, n in series)
    peak_day, peak = max(series, key=lambda item: (item[1], item[0]))
    summary = f"{label}, {start} to {end}: {total:,} requests"
    if peak:
        summary += f", at most {peak:,} on {peak_day}"
    plot = height - _TOP - _BOTTOM
    slot = width / days
    bar = max(slot - 2, 1.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="usage-chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(summary)}">',
        f"<title>{escape(summary)}</title>",
        f'<text x="0" y="10" font-size="10" fill="currentColor">{peak:,}</text>',
    ]
    for i, (day, count) in enumerate(series):
        h = round(plot * count / peak, 1) if peak else 0.0
        x = round(i * slot + (slot - bar) / 2, 1)
        y = round(_TOP + plot - h, 1)
        noun = "request" if count == 1 else "requests"
        parts.append(
            f'<rect x="{x}" y="{y}" width="{round(bar, 1)}" height="{h}" fill="currentColor">'
            f"<title>{day}: {count:,} {noun}</title></rect>"
        )
    base = _TOP + plot
    parts += [
        f'<line x1="0" y1="{base}" x2="{width}" y2="{base}" stroke="currentColor" stroke-width="0.5"/>',
        f'<text x="0" y="{height - 3}" font-size="10" fill="currentColor">{start}</text>',
        f'<text x="{width}" y="{height - 3}" font-size="10" fill="currentColor" '
        f'text-anchor="end">{end}</text>',
        "</svg>",
    ]
    return "".join(parts)
