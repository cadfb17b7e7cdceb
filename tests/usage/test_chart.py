from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest

from thotbot.usage import requests_chart

SVG = "{http://www.w3.org/2000/svg}"
END = date(2026, 5, 30)


def _svg(text: str) -> ET.Element:
    return ET.fromstring(text)  # noqa: S314 - our own markup, not untrusted input


def _bars(svg: str) -> list[tuple[float, str]]:
    root = _svg(svg)
    return [
        (float(rect.attrib["height"]), rect.findtext(f"{SVG}title") or "") for rect in root.iter(f"{SVG}rect")
    ]


def test_one_bar_per_day_for_30_days() -> None:
    counts = {END: 10, END - timedelta(days=29): 5, END - timedelta(days=30): 999}

    bars = _bars(requests_chart(counts, end=END))

    assert len(bars) == 30
    assert bars[0][1] == "2026-05-01: 5 requests"
    assert bars[-1][1] == "2026-05-30: 10 requests"
    assert bars[1][1] == "2026-05-02: 0 requests"
    # Heights scale to the busiest day in the window; the day before it is not drawn.
    assert bars[-1][0] == 2 * bars[0][0]
    assert bars[1][0] == 0


def test_summary_for_screen_readers() -> None:
    svg = requests_chart({END - timedelta(days=3): 1_234, END: 1}, end=END)

    root = _svg(svg)
    assert root.attrib["role"] == "img"
    assert root.attrib["aria-label"] == (
        "Requests per day, 2026-05-01 to 2026-05-30: 1,235 requests, at most 1,234 on 2026-05-27"
    )
    assert root.findtext(f"{SVG}title") == root.attrib["aria-label"]


def test_empty_chart() -> None:
    svg = requests_chart({}, end=END, days=7)

    bars = _bars(svg)
    assert [h for h, _ in bars] == [0.0] * 7
    assert "0 requests" in _svg(svg).attrib["aria-label"]


def test_no_inline_style_or_script_and_the_label_is_escaped() -> None:
    svg = requests_chart({END: 1}, end=END, label='<script>"x"</script>')

    assert "<script>" not in svg
    assert "style=" not in svg
    assert _svg(svg).attrib["aria-label"].startswith('<script>"x"</script>, ')


@pytest.mark.parametrize("days", [1, 7, 30, 90])
def test_bars_fit_the_box(days: int) -> None:
    root = _svg(requests_chart({END: 3, END - timedelta(days=days - 1): 1}, end=END, days=days))

    width = float(root.attrib["width"])
    for rect in root.iter(f"{SVG}rect"):
        x, w, y = float(rect.attrib["x"]), float(rect.attrib["width"]), float(rect.attrib["y"])
        assert x >= 0
        assert x + w <= width
        assert y >= 0
