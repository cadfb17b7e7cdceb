from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from thotbot.core.dates import utcnow
from thotbot.services import Services
from thotbot.storage import SignInThrottleStore
from thotbot.storage.memory import MemorySignInThrottle
from thotbot.storage.models import SignInThrottle
from thotbot.storage.throttle import ACCOUNT_RULE, Attempt, ThrottleRule, bucket_for

EMAIL = "target@example.com"
LONG = timedelta(hours=1)  # a first wait no slow machine sees pass during a test


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(0, 0), (5, 0), (6, 1), (7, 2), (8, 4), (15, 512), (16, 900), (500, 900)],
)
def test_rule_delay_doubles_up_to_its_cap(failures: int, seconds: int) -> None:
    assert ThrottleRule(free_failures=5).delay(failures) == timedelta(seconds=seconds)


def test_the_account_rule_pauses_at_the_100th_consecutive_failure() -> None:
    # NIST SP 800-63B 5.2.2: no more than 100 consecutive failed attempts on one account.
    assert ACCOUNT_RULE.delay(99) == timedelta(0)
    assert ACCOUNT_RULE.delay(100) == timedelta(minutes=15)


def _fail_times(
    throttle: SignInThrottleStore, n: int, email: str, ip: str | None, *, now: datetime
) -> list[Attempt]:
    return [throttle.reserve(email, ip, now=now) for _ in range(n)]


class TestSignInThrottle:
    @pytest.fixture
    def throttle(self, services: Services) -> SignInThrottleStore:
        throttle = services.sign_in_throttle
        throttle.pair_rule = ThrottleRule(free_failures=2)
        throttle.address_rule = ThrottleRule(free_failures=4)
        throttle.account_rule = ThrottleRule(free_failures=6, first_delay=LONG, max_delay=4 * LONG)
        return throttle

    def test_reserve_per_account_and_address(self, throttle: SignInThrottleStore) -> None:
        now = utcnow()
        first = _fail_times(throttle, 3, EMAIL, "192.0.2.1", now=now)

        assert [a.allowed for a in first] == [True, True, True]
        assert [a.wait_if_wrong for a in first] == [0, 0, 1]
        refused = throttle.reserve(EMAIL, "192.0.2.1", now=now)
        assert (refused.allowed, refused.retry_after, refused.account_paused) == (False, 1, False)
        # The owner, elsewhere, is not held up by guesses from 192.0.2.1 ...
        assert throttle.reserve(EMAIL, "192.0.2.9", now=now).allowed
        # ... and the wait ends.
        assert throttle.reserve(EMAIL, "192.0.2.1", now=now + timedelta(seconds=1)).allowed

    def test_a_refused_attempt_counts_nothing(
        self, throttle: SignInThrottleStore, services: Services
    ) -> None:
        now = utcnow()
        _fail_times(throttle, 3, EMAIL, "192.0.2.1", now=now)

        for _ in range(5):
            assert not throttle.reserve(EMAIL, "192.0.2.1", now=now).allowed

        assert _failures(services, bucket_for("account", EMAIL)) == 3

    def test_reserve_per_address_across_accounts(self, throttle: SignInThrottleStore) -> None:
        now = utcnow()
        for n in range(5):
            assert throttle.reserve(f"user{n}@example.com", "192.0.2.1", now=now).allowed

        assert throttle.reserve("fresh@example.com", "192.0.2.1", now=now).retry_after == 1
        assert throttle.reserve("fresh@example.com", "192.0.2.2", now=now).allowed

    def test_an_ipv6_client_is_counted_by_its_64(self, throttle: SignInThrottleStore) -> None:
        now = utcnow()
        for n in range(3):
            throttle.reserve(EMAIL, f"2001:db8:1:2::{n + 1}", now=now)

        assert not throttle.reserve(EMAIL, "2001:db8:1:2:ffff::9", now=now).allowed
        assert throttle.reserve(EMAIL, "2001:db8:1:3::1", now=now).allowed

    def test_the_account_pauses_once_from_any_address(self, throttle: SignInThrottleStore) -> None:
        now = utcnow()
        attempts = [throttle.reserve(EMAIL, f"198.51.100.{n}", now=now) for n in range(7)]

        assert [a.pauses_account for a in attempts] == [False] * 6 + [True]
        assert attempts[-1].paused_until == now + LONG
        refused = throttle.reserve(EMAIL, "203.0.113.5", now=now)
        assert (refused.allowed, refused.account_paused, refused.paused_until) == (False, True, now + LONG)
        # After the pause, a further failure waits longer but is not a new pause to tell about.
        later = throttle.reserve(EMAIL, "203.0.113.5", now=now + LONG)
        assert later.allowed
        assert not later.pauses_account

    def test_success_clears_the_account_but_gives_back_one_address_attempt(
        self, throttle: SignInThrottleStore, services: Services
    ) -> None:
        now = utcnow()
        _fail_times(throttle, 2, EMAIL, "192.0.2.1", now=now)
        _fail_times(throttle, 2, "other@example.com", "192.0.2.1", now=now)
        assert throttle.reserve(EMAIL, "192.0.2.1", now=now).allowed  # the right password, say

        throttle.record_success(EMAIL, "192.0.2.1")

        assert _failures(services, bucket_for("account", EMAIL)) is None
        assert _failures(services, bucket_for("address", "192.0.2.1")) == 4
        assert throttle.reserve(EMAIL, "192.0.2.1", now=now).allowed

    def test_forget_account_clears_it_from_every_address_but_not_the_addresses(
        self, throttle: SignInThrottleStore, services: Services
    ) -> None:
        now = utcnow()
        _fail_times(throttle, 3, EMAIL, "192.0.2.1", now=now)
        _fail_times(throttle, 3, EMAIL, "192.0.2.2", now=now)
        _fail_times(throttle, 1, "other@example.com", "192.0.2.1", now=now)
        assert not throttle.reserve(EMAIL, "192.0.2.2", now=now).allowed

        throttle.forget_account(EMAIL)

        assert throttle.reserve(EMAIL, "192.0.2.2", now=now).allowed
        assert _failures(services, bucket_for("address", "192.0.2.2")) == 4
        # The address's own count spans other accounts: it is kept.
        assert _failures(services, bucket_for("address", "192.0.2.1")) == 4

    def test_failures_are_forgotten_after_a_quiet_hour(self, throttle: SignInThrottleStore) -> None:
        start = utcnow()
        _fail_times(throttle, 3, EMAIL, None, now=start)

        later = start + timedelta(hours=1, seconds=1)
        assert throttle.reserve(EMAIL, None, now=later).wait_if_wrong == 0

    def test_prune_keeps_the_account_count_for_a_day(
        self, throttle: SignInThrottleStore, services: Services
    ) -> None:
        start = utcnow()
        throttle.account_rule = ACCOUNT_RULE
        throttle.reserve(EMAIL, "192.0.2.1", now=start)

        assert throttle.prune(now=start + timedelta(hours=2)) == 0
        assert throttle.prune(now=start + timedelta(days=1, seconds=1)) == 3


def _failures(services: Services, bucket: str) -> int | None:
    """The failures a bucket counts (None: no such bucket), read where the backend keeps them."""
    throttle = services.sign_in_throttle
    if isinstance(throttle, MemorySignInThrottle):
        with throttle.db.transaction() as db:
            found = db.throttle.get(bucket)
            return found.failures if found else None
    with services.db() as session:
        row = session.get(SignInThrottle, bucket)
        return row.failures if row else None
