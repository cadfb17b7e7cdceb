"""The report's reads and the daily mail's setting, on every store backend."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

from tests.factories import make_api_key, make_user
from tests.request_hours import add_hour
from thotbot.services import Services

H = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
DAY = date(2026, 5, 1)


def test_window_holds_only_keys_that_failed_in_it(services: Services) -> None:
    owner = make_user(services, "ops@acme.example")
    _, failing = make_api_key(services, owner, name="sync")
    _, healthy = make_api_key(services, owner, name="fine")
    add_hour(services, failing.id, H, 3)
    add_hour(services, failing.id, H, 5, code="rate_limited", user_agent="curl/8.5.0")
    add_hour(services, failing.id, H + timedelta(hours=1), 7, code="rate_limited")
    add_hour(services, failing.id, H + timedelta(hours=1), 2, code="not_found", endpoint="GET /v1/keys/{id}")
    add_hour(services, failing.id, H + timedelta(hours=5), 100, code="rate_limited")  # after the window
    add_hour(services, healthy.id, H, 50)

    window = services.failing.window(H, H + timedelta(hours=2))

    assert set(window.owners) == {failing.id}
    assert window.owners[failing.id].account_email == "ops@acme.example"
    assert window.owners[failing.id].key.name == "sync"
    counts = sorted((c.endpoint, c.code, c.requests) for c in window.counts)
    assert counts == [
        ("GET /v1/keys", "", 3),
        ("GET /v1/keys", "rate_limited", 12),
        ("GET /v1/keys/{id}", "not_found", 2),
    ]
    limited = next(c for c in window.counts if c.code == "rate_limited")
    assert (limited.first_seen, limited.last_seen) == (
        H + timedelta(minutes=1),
        H + timedelta(hours=1, minutes=59),
    )
    agents = sorted((a.user_agent, a.requests) for a in window.agents)
    assert agents == [("acme-sync/2.3.1 (ops@acme.example)", 12), ("curl/8.5.0", 5)]


def test_an_empty_window(services: Services) -> None:
    _, key = make_api_key(services)
    add_hour(services, key.id, H, 10)

    window = services.failing.window(H, H + timedelta(hours=1))

    assert (window.counts, window.agents, window.owners) == ((), (), {})


def test_the_mail_is_on_until_turned_off(services: Services) -> None:
    account = make_user(services)
    assert services.failing.integration_mail(account.id) is True

    assert services.failing.set_integration_mail(account.id, False) is True
    assert services.failing.integration_mail(account.id) is False
    assert services.failing.claim_integration_mail(account.id, DAY) is False

    services.failing.set_integration_mail(account.id, True)
    assert services.failing.claim_integration_mail(account.id, DAY) is True
    assert services.failing.set_integration_mail("acct_nobody", False) is False


def test_a_day_is_claimed_once(services: Services) -> None:
    account = make_user(services)

    assert services.failing.claim_integration_mail(account.id, DAY) is True
    assert services.failing.claim_integration_mail(account.id, DAY) is False
    assert services.failing.claim_integration_mail(account.id, DAY - timedelta(days=1)) is False
    assert services.failing.claim_integration_mail(account.id, DAY + timedelta(days=1)) is True


def test_of_racing_claims_exactly_one_wins(services: Services) -> None:
    account = make_user(services)
    barrier = threading.Barrier(4)
    results: list[bool] = []

    def claim() -> None:
        barrier.wait()
        results.append(services.failing.claim_integration_mail(account.id, DAY))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False, False, False, True]
