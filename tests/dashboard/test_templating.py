from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from thotbot.dashboard.templating import absolute_time, describe_actor, describe_user_agent, relative_time

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=-10), "just now"),
        (timedelta(seconds=10), "in a few seconds"),
        (timedelta(minutes=-1), "1 minute ago"),
        (timedelta(minutes=-5), "5 minutes ago"),
        (timedelta(hours=2), "in 2 hours"),
        (timedelta(days=1), "in 1 day"),
        (timedelta(days=90) - timedelta(milliseconds=5), "in 90 days"),
        (timedelta(days=-200), "7 months ago"),
        (timedelta(days=365), "in 1 year"),
        (timedelta(days=-3 * 365), "3 years ago"),
    ],
)
def test_relative_time(delta: timedelta, text: str) -> None:
    assert relative_time(NOW + delta, NOW) == text


def test_absolute_time_is_utc() -> None:
    when = datetime(2026, 3, 10, 14, 5, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))

    assert absolute_time(when) == "2026-03-10 14:05 UTC"


@pytest.mark.parametrize(
    ("user_agent", "text"),
    [
        (None, "Unknown device"),
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0 Safari/537.36", "Chrome on Linux"),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Version/18.0 Mobile Safari/604.1",
            "Safari on iPhone",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0",
            "Firefox on Windows",
        ),
        ("acme-sync/2.3.1 (ops@acme.example)", "acme-sync/2.3.1 (ops@acme.example)"),
        ("x" * 100, "x" * 59 + "…"),
    ],
)
def test_describe_user_agent(user_agent: str | None, text: str) -> None:
    assert describe_user_agent(user_agent) == text


@pytest.mark.parametrize(
    ("actor", "text"),
    [
        ("session:ses_1", "You, in this browser"),
        ("session:ses_2", "You, on the dashboard"),
        ("api_key:key_9", "API key key_9"),
        ("operator", "The operator"),
        ("anonymous", "Someone signing in"),
        ("something-new", "something-new"),
    ],
)
def test_describe_actor(actor: str, text: str) -> None:
    assert describe_actor(actor, "ses_1") == text
