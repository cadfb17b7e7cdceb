"""The report of failing integrations as a pure function over a window's rows: the rule that says
"mostly fails", revoked and expired keys, the top codes, the parsed contact, the order, the mail line."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from thotbot.storage import KeyRecord
from thotbot.storage.failing import AgentSeen, EndpointCount, KeyOwner, RequestWindow
from thotbot.usage.failing import failing_json, failing_keys, failing_lines, mail_line, parse_since

NOW = datetime(2026, 5, 2, 9, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=1)
T = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _key(key_id: str, *, revoked_at: datetime | None = None, expires_at: datetime | None = None) -> KeyRecord:
    return KeyRecord(
        id=key_id,
        account_id="acct_" + key_id,
        name="nightly-sync" if key_id == "k1" else key_id,
        hint="thot_ak_1a2b…9f0e",
        read_only=False,
        grants=frozenset(),
        created_at=T - timedelta(days=30),
        expires_at=expires_at,
        revoked_at=revoked_at,
        last_used_at=T,
        last_user_agent=None,
    )


def _count(key_id: str, code: str, requests: int, endpoint: str = "GET /v1/keys") -> EndpointCount:
    return EndpointCount(key_id, endpoint, code, requests, T, T + timedelta(hours=1))


def _window(
    keys: list[KeyRecord], counts: list[EndpointCount], agents: Sequence[AgentSeen] = ()
) -> RequestWindow:
    owners = {k.id: KeyOwner(f"{k.id}@example.com", k) for k in keys}
    return RequestWindow(SINCE, NOW, tuple(counts), tuple(agents), owners)


@pytest.mark.parametrize(
    ("ok", "failed", "listed"),
    [
        (4, 6, True),  # 10 requests, 6 failed: mostly
        (5, 5, False),  # half is not more than half
        (0, 9, False),  # under 10 requests
        (1, 9, True),  # exactly 10
        (100, 0, False),  # nothing failed
    ],
)
def test_at_least_ten_requests_and_more_than_half_failed(ok: int, failed: int, listed: bool) -> None:
    counts = [_count("k2", "", ok), _count("k2", "rate_limited", failed)]

    report = failing_keys(_window([_key("k2")], counts), NOW)

    assert bool(report) is listed
    if listed:
        assert (report[0].requests, report[0].failed) == (ok + failed, failed)


def test_a_revoked_key_counts_with_any_use() -> None:
    revoked = _key("k1", revoked_at=NOW - timedelta(days=3))

    [entry] = failing_keys(_window([revoked], [_count("k1", "revoked_api_key", 1)]), NOW)

    assert (entry.state, entry.state_at, entry.requests, entry.failed) == (
        "revoked",
        revoked.revoked_at,
        1,
        1,
    )


def test_an_expired_key_counts_with_any_use_and_says_when() -> None:
    expired = _key("k3", expires_at=NOW - timedelta(hours=5))

    [entry] = failing_keys(_window([expired], [_count("k3", "expired_api_key", 2)]), NOW)

    assert (entry.state, entry.state_at) == ("expired", expired.expires_at)


def test_top_three_codes_and_the_top_failing_endpoint() -> None:
    counts = [
        _count("k2", "", 5),
        _count("k2", "rate_limited", 30, "GET /v1/keys"),
        _count("k2", "not_found", 20, "GET /v1/keys/{id}"),
        _count("k2", "not_found", 15, "DELETE /v1/keys/{id}"),
        _count("k2", "validation_failed", 10, "POST /v1/keys"),
        _count("k2", "forbidden", 2, "POST /v1/keys"),
    ]

    [entry] = failing_keys(_window([_key("k2")], counts), NOW)

    assert entry.top_codes == (("not_found", 35), ("rate_limited", 30), ("validation_failed", 10))
    assert entry.top_endpoint == ("GET /v1/keys", 30)
    assert (entry.requests, entry.failed) == (82, 77)


def test_user_agents_are_parsed_into_app_version_and_contact() -> None:
    agents = [
        AgentSeen("k2", "curl/8.5.0", 3, T),
        AgentSeen("k2", "nightly-sync/3.1 (ops@acme.example)", 40, T),
    ]

    [entry] = failing_keys(_window([_key("k2")], [_count("k2", "rate_limited", 43)], agents), NOW)

    first, second = entry.agents
    assert (first.app, first.version, first.contact, first.requests) == (
        "nightly-sync",
        "3.1",
        "ops@acme.example",
        40,
    )
    assert (second.app, second.contact) == ("curl", None)


def test_most_failed_first() -> None:
    keys = [_key("a"), _key("b"), _key("c", revoked_at=T)]
    counts = [
        _count("a", "rate_limited", 20),
        _count("b", "rate_limited", 50),
        _count("c", "revoked_api_key", 1),
    ]

    assert [e.key.id for e in failing_keys(_window(keys, counts), NOW)] == ["b", "a", "c"]


def test_json_shape() -> None:
    revoked = _key("k1", revoked_at=NOW - timedelta(days=3))
    window = _window(
        [revoked], [_count("k1", "revoked_api_key", 1200)], [AgentSeen("k1", "nightly-sync/3.1", 1200, T)]
    )

    body = failing_json(failing_keys(window, NOW), SINCE, NOW)

    assert body["rule"] == {
        "min_requests": 10,
        "min_failed_share": 0.5,
        "any_use_of": ["expired_api_key", "revoked_api_key"],
    }
    assert body["keys"] == [
        {
            "account_id": "acct_k1",
            "account_email": "k1@example.com",
            "key_id": "k1",
            "name": "nightly-sync",
            "hint": "thot_ak_1a2b…9f0e",
            "state": "revoked",
            "state_at": "2026-04-29T09:00:00Z",
            "requests": 1200,
            "failed": 1200,
            "failed_share": 1.0,
            "top_codes": [{"code": "revoked_api_key", "requests": 1200}],
            "top_failing_endpoint": {"endpoint": "GET /v1/keys", "requests": 1200},
            "first_seen": "2026-05-01T12:00:00Z",
            "last_seen": "2026-05-01T13:00:00Z",
            "user_agents": [
                {
                    "user_agent": "nightly-sync/3.1",
                    "app": "nightly-sync",
                    "version": "3.1",
                    "contact": None,
                    "requests": 1200,
                    "last_seen": "2026-05-01T12:00:00Z",
                }
            ],
        }
    ]


def test_text_and_mail_line() -> None:
    revoked = _key("k1", revoked_at=NOW - timedelta(days=3))
    window = _window(
        [revoked], [_count("k1", "revoked_api_key", 1200)], [AgentSeen("k1", "nightly-sync/3.1", 1200, T)]
    )
    [entry] = failing_keys(window, NOW)

    assert mail_line(entry, NOW) == (
        "'nightly-sync' was revoked 3 days ago and was used 1,200 times yesterday by nightly-sync 3.1."
    )
    text = "\n".join(failing_lines([entry]))
    assert "k1@example.com  k1  'nightly-sync'  thot_ak_1a2b…9f0e  revoked 2026-04-29 09:00" in text
    assert "1,200 of 1,200 requests failed (100%)" in text
    assert "errors: revoked_api_key 1,200" in text
    assert "user-agent: nightly-sync/3.1  [nightly-sync 3.1; no contact; 1,200 requests]" in text


def test_mail_line_of_an_active_key_names_its_main_error() -> None:
    counts = [_count("k2", "", 188), _count("k2", "rate_limited", 812)]
    [entry] = failing_keys(_window([_key("k2")], counts), NOW)

    assert (
        mail_line(entry, NOW)
        == "'k2': 812 of its 1,000 requests failed yesterday (81%, mostly rate_limited)."
    )


@pytest.mark.parametrize(
    ("given", "minutes"), [("30m", 30), ("24h", 24 * 60), ("7d", 7 * 24 * 60), (" 2h ", 120)]
)
def test_since(given: str, minutes: int) -> None:
    assert parse_since(given) == timedelta(minutes=minutes)


@pytest.mark.parametrize("given", ["", "0h", "24", "h", "-1d", "1w", "1.5h", "401d", "24hours"])
def test_bad_since(given: str) -> None:
    with pytest.raises(ValueError, match="--since"):
        parse_since(given)
